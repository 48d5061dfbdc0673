"""The sd_notify protocol of the real daemon subprocess, received on a real NOTIFY_SOCKET datagram
socket bound by the test (an abstract address, as systemd uses): READY after start, STATUS with
camera states, WATCHDOG pings while frames move, RELOADING+READY around SIGHUP, STOPPING last."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.support.daemon_harness import DaemonProcess, write_config
from tests.support.notify import NotifyListener
from tests.support.tiny_model import build_tiny_yolo_onnx


@pytest.fixture
def listener():
    lis = NotifyListener("pipeline-notify-test")
    yield lis
    lis.close()
    assert not lis.malformed, f"datagrams with a line that is not KEY=VALUE: {lis.malformed}"


def wait_until(predicate, timeout: float, d: DaemonProcess) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        d.pump(0.1)
    return predicate()


def test_daemon_speaks_sd_notify(tmp_path: Path, listener: NotifyListener) -> None:
    model = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=3, input_size=64)
    cfg = write_config(tmp_path / "cfg.yaml", [{"id": "a", "url": "synthetic:64x48@15"}],
                       {"path": str(model), "labels": ["r", "g", "b"], "input_size": 64})
    env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "4000000"}  # ping every 1 s
    with DaemonProcess(cfg, env=env) as d:
        assert wait_until(lambda: "READY+STATUS" in listener.keys(), 60, d), d.stderr_path.read_text()
        assert "started 1 camera(s)" in d.stderr_path.read_text()  # READY only after start()
        first = listener.messages[0][1]
        assert first["READY"] == "1" and "camera(s)" in first["STATUS"]
        assert listener.keys()[0] == "READY+STATUS"  # nothing before READY, no early WATCHDOG

        assert wait_until(lambda: listener.keys().count("WATCHDOG") >= 3
                          and any(m.get("STATUS", "").startswith("1 camera(s): 1 up;") for _, m in listener.messages)
                          and len(d.messages) > 10, 30, d), (listener.keys(), d.stderr_path.read_text())
        pings = [t for t, m in listener.messages if "WATCHDOG" in m]
        assert max(b - a for a, b in zip(pings, pings[1:])) < 3.0  # inside WatchdogSec=4

        n_before = len(listener.messages)
        d.proc.send_signal(signal.SIGHUP)
        def reloaded() -> list[dict[str, str]]:
            """The datagrams from RELOADING on, once a READY followed it."""
            after = [m for _, m in listener.messages[n_before:]]
            at = next((i for i, m in enumerate(after) if "RELOADING" in m), None)
            return after[at:] if at is not None and any("READY" in m for m in after[at:]) else []

        assert wait_until(lambda: bool(reloaded()), 30, d), listener.keys()
        assert reloaded()[0]["RELOADING"] == "1"
        usec = int(reloaded()[0]["MONOTONIC_USEC"])
        assert abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 30

        d.terminate()
        run = d.finish(timeout=30)
    assert run.returncode == 0, run.stderr
    assert wait_until(lambda: "STOPPING" in listener.keys(), 5, d)
    keys = listener.keys()
    assert "WATCHDOG" not in keys[keys.index("STOPPING"):]
