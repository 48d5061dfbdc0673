"""The camera handles' shared deadline (pipeline/app/cameras.py), with stand-in handles on real threads."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import pytest

from pipeline.app.cameras import CameraRegistry, CameraThread, join_cameras
from pipeline.config import CameraConfig, DecodeConfig
from pipeline.frame import CameraState, Frame, StatusEvent
from pipeline.observe.metrics import Metrics


@dataclass
class SlowCamera:
    """A camera handle (as CameraThread / WorkerCamera) whose thread ends when `done` is set."""

    config: object
    thread: threading.Thread

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def is_alive(self) -> bool:
        return self.thread.is_alive()


@dataclass(frozen=True)
class Named:
    id: str


def test_cameras_that_do_not_stop_are_named_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    done = threading.Event()
    stuck = [SlowCamera(Named(f"cam-{i}"), threading.Thread(target=done.wait, daemon=True)) for i in range(8)]
    prompt = SlowCamera(Named("quick"), threading.Thread(target=lambda: None, daemon=True))
    for cam in (*stuck, prompt):
        cam.thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.app.cameras"):
            join_cameras([*stuck, prompt], timeout_s=0.2)
    finally:
        done.set()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["8 camera(s) did not stop within 0.2s, left to end on their own: "
                        "cam-0, cam-1, cam-2, cam-3, cam-4 and 3 more"]


def test_no_warning_when_every_camera_stops(caplog: pytest.LogCaptureFixture) -> None:
    cams = [SlowCamera(Named(f"cam-{i}"), threading.Thread(target=lambda: None, daemon=True)) for i in range(3)]
    for cam in cams:
        cam.thread.start()
    with caplog.at_level(logging.WARNING, logger="pipeline.app.cameras"):
        join_cameras(cams)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_registry_of_real_camera_threads_stops_and_forgets_them() -> None:
    frames: list[Frame] = []
    statuses: list[StatusEvent] = []
    registry = CameraRegistry()
    for cid in ("a", "b"):
        registry.add(CameraThread.start(CameraConfig(id=cid, url="synthetic:32x24@50"), DecodeConfig(),
                                        frames.append, statuses.append, threading.Event(), Metrics()))
    assert "a" in registry and not registry.all_ended()
    deadline = time.monotonic() + 5
    while {f.camera_id for f in frames} != {"a", "b"} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert {f.camera_id for f in frames} == {"a", "b"}
    [b] = registry.pop(["b", "unknown"])
    b.request_stop()
    join_cameras([b])
    assert not b.is_alive() and "b" not in registry and not registry.all_ended()
    join_cameras(registry.stop_all())
    assert registry.all_ended()  # "a" is still registered, and has stopped
    assert {(s.camera_id, s.state) for s in statuses} >= {("a", CameraState.STOPPED), ("b", CameraState.STOPPED)}
