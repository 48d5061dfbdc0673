"""The camera handles' shared deadline (pipeline/app/cameras.py), with stand-in handles on real threads."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import pytest

from pipeline.app.cameras import join_cameras


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
