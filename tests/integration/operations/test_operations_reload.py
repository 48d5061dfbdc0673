"""Live config changes (SIGHUP) on the real daemon subprocess with a real subscriber: added
cameras start, removed ones publish `stopped`, changed ones restart, the untouched one streams on
with no gap in seq; an invalid config is rejected with its file:line and the running one goes on."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml

from tests.support.daemon_harness import DaemonProcess, write_config
from tests.support.tiny_model import build_tiny_yolo_onnx


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = build_tiny_yolo_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", num_classes=3, input_size=64)
    return {"path": str(path), "labels": ["red", "green", "blue"], "input_size": 64}


def synthetic(cam_id: str, size: str = "64x48", fps: int = 15) -> dict:
    return {"id": cam_id, "url": f"synthetic:{size}@{fps}"}


def dets(messages: list, cam: str) -> list[dict]:
    return [m for t, m in messages if t == f"det/{cam}/"]


def states(messages: list, cam: str) -> list[str]:
    return [m["state"] for t, m in messages if t == f"status/{cam}/"]


@pytest.mark.parametrize("workers", [0, 2], ids=["camera-threads", "decode-workers"])
def test_sighup_applies_camera_changes_live(tmp_path: Path, tiny_model: dict, workers: int) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", [synthetic("keep"), synthetic("gone"), synthetic("change")],
                       tiny_model, scheduler={"max_batch": 4, "max_wait_ms": 20}, decode={"workers": workers})
    doc = yaml.safe_load(cfg.read_text())
    with DaemonProcess(cfg) as d:
        assert d.pump_until(lambda ms: all(len(dets(ms, c)) >= 5 for c in ("keep", "gone", "change")), 60), \
            d.stderr_path.read_text()

        doc["cameras"] = [synthetic("keep"), synthetic("change", size="96x64"), synthetic("fresh")]
        doc["scheduler"]["max_wait_ms"] = 30  # not live: the log must say a restart is needed
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
        d.proc.send_signal(signal.SIGHUP)
        keep_before = len(dets(d.messages, "keep"))
        assert d.pump_until(lambda ms: "stopped" in states(ms, "gone")
                            and any(m["width"] == 96 for m in dets(ms, "change"))
                            and len(dets(ms, "fresh")) >= 5
                            and len(dets(ms, "keep")) >= keep_before + 10, 60), d.stderr_path.read_text()
        log = d.wait_for_log("reload applied", 10)
        assert "reload applied: 1 added (fresh), 1 removed (gone), 1 restarted (change), 1 unchanged" in log
        assert "reload: scheduler: changes here apply only at start; restart the service" in log

        cfg.write_text(cfg.read_text().replace("- id: fresh", "- id: fresh\n  fps: 5"))  # unknown key
        bad_line = cfg.read_text().splitlines().index("  fps: 5") + 1
        d.proc.send_signal(signal.SIGHUP)
        log = d.wait_for_log("reload rejected", 30)
        assert f"reload rejected, the running config stays: {cfg}:{bad_line}: cameras[2].fps: unknown key 'fps'" \
            in log
        counts = {c: len(dets(d.messages, c)) for c in ("keep", "change", "fresh")}
        assert d.pump_until(lambda ms: all(len(dets(ms, c)) >= counts[c] + 5 for c in counts), 60)
        assert d.proc.poll() is None, "a rejected reload must not stop the daemon"
        d.terminate()
        run = d.finish(timeout=30)
    assert run.returncode == 0, run.stderr

    keep = run.detections("keep")
    assert [m["seq"] for m in keep] == list(range(len(keep)))  # no gap across both reloads
    frames = [m["frame"] for m in keep]
    assert frames == sorted(frames)  # never restarted: its frame counter never went back
    assert states(run.messages, "keep") == ["starting", "up", "stopped"]  # the final stop only

    change = run.detections("change")
    assert [m["seq"] for m in change] == list(range(len(change)))  # the publisher's seq survives a restart
    assert states(run.messages, "change") == ["starting", "up", "stopped", "starting", "up", "stopped"]
    widths = [m["width"] for m in change]
    assert widths[0] == 64 and widths[-1] == 96 and widths == sorted(widths)

    assert states(run.messages, "gone") == ["starting", "up", "stopped"]
    assert states(run.messages, "fresh") == ["starting", "up", "stopped"]
