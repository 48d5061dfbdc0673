"""Runs the real daemon as a subprocess (`python -m pipeline run`) and collects what it publishes
through a real ZeroMQ subscriber."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.publish.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]


def free_tcp_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def write_config(path: Path, cameras: list[dict], model: dict, **sections: dict) -> Path:
    doc = {"cameras": cameras, "model": model, **sections}
    doc.setdefault("publish", {"bind": free_tcp_endpoint()})
    doc.setdefault("metrics", {"bind": None})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class DaemonRun:
    returncode: int | None
    stderr: str
    messages: list[tuple[str, dict]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def detections(self, camera: str | None = None) -> list[dict]:
        return [m for t, m in self.messages if t.startswith("det/") and (camera is None or m["camera"] == camera)]

    def statuses(self, camera: str | None = None) -> list[dict]:
        return [m for t, m in self.messages if t.startswith("status/") and (camera is None or m["camera"] == camera)]


class DaemonProcess:
    """`with DaemonProcess(cfg) as d:` starts the daemon, waits for our subscriber to connect first."""

    def __init__(self, config: Path, extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.config = config
        bind = yaml.safe_load(config.read_text())["publish"]["bind"]
        self.subscriber = Subscriber(bind)
        cmd = [sys.executable, "-m", "pipeline", "run", str(config), "--wait-for-subscribers", "1",
               "--status-interval", "0", *extra_args]
        self.started = time.monotonic()
        # stderr to a file, not a pipe: a chatty daemon must never block on a full pipe
        self.stderr_path = config.with_suffix(".stderr.log")
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stderr=self._stderr, stdout=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})})
        self.messages: list[tuple[str, dict]] = []

    def __enter__(self) -> "DaemonProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()
        self.subscriber.close()

    def pump(self, seconds: float) -> None:
        """Collect messages for `seconds` (or until the daemon exits)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            got = self.subscriber.recv(timeout=0.1)
            if got is not None:
                self.messages.append(got)
            elif self.proc.poll() is not None:
                return

    def pump_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.messages):
                return True
            got = self.subscriber.recv(timeout=0.1)
            if got is not None:
                self.messages.append(got)
            elif self.proc.poll() is not None:
                return predicate(self.messages)
        return predicate(self.messages)

    def wait_for_log(self, text: str, timeout: float) -> str:
        """Pump messages until `text` appears in the daemon's stderr; returns the stderr."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.stderr_path.read_text()
            if text in log:
                return log
            self.pump(0.2)
        raise AssertionError(f"{text!r} not logged within {timeout}s:\n{self.stderr_path.read_text()}")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def finish(self, timeout: float = 120.0) -> DaemonRun:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            got = self.subscriber.recv(timeout=0.1)
            if got is not None:
                self.messages.append(got)
        while (got := self.subscriber.recv(timeout=0.3)) is not None:
            self.messages.append(got)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._stderr.flush()
        return DaemonRun(self.proc.returncode, self.stderr_path.read_text(), self.messages,
                         time.monotonic() - self.started)


def run_daemon(config: Path, timeout: float = 120.0) -> DaemonRun:
    with DaemonProcess(config) as d:
        return d.finish(timeout)
