"""The running cameras, whatever runs them: a thread of this process (CameraThread) or a decode
worker process (pipeline/workers/pool.py: WorkerCamera). The daemon and the supervisor see both
through one handle (CameraHandle) and keep them in one registry (CameraRegistry)."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

from pipeline.config import CameraConfig, DecodeConfig
from pipeline.frame import Frame, StatusEvent
from pipeline.observe.metrics import Metrics
from pipeline.sources import create_source

log = logging.getLogger("pipeline.app.cameras")

JOIN_S = 1.0  # stopped cameras get this long together (SIGTERM must exit within 5 s)
LATE_NAMED = 5  # cameras named in the "did not stop" warning


class CameraHandle(Protocol):
    config: CameraConfig

    def request_stop(self) -> None:
        """Ask the camera to stop (it publishes `stopped`); returns at once."""

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` s for the camera to have stopped."""

    def is_alive(self) -> bool:
        """False once the camera has stopped or ended (eof, down)."""


@dataclass
class CameraThread:
    """A camera whose source runs on a thread of this process."""

    config: CameraConfig
    stop: threading.Event
    thread: threading.Thread

    @classmethod
    def start(cls, cam: CameraConfig, decode: DecodeConfig, sink: Callable[[Frame], None],
              status: Callable[[StatusEvent], None], stop: threading.Event, metrics: Metrics) -> "CameraThread":
        """Create the camera's source (errors here are the camera's start errors) and run it."""
        source = create_source(cam, decode, sink, status, stop, metrics)
        handle = cls(cam, stop, threading.Thread(target=source.run, name=f"camera-{cam.id}", daemon=True))
        handle.thread.start()
        return handle

    def request_stop(self) -> None:
        self.stop.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def is_alive(self) -> bool:
        return self.thread.is_alive()


def join_cameras(cams: list[CameraHandle], timeout_s: float = JOIN_S) -> None:
    """Wait for stopped cameras under one shared deadline; the ones still running are left behind,
    named in one line (a hundred cameras, one warning)."""
    deadline = time.monotonic() + timeout_s
    for cam in cams:
        cam.join(max(0.0, deadline - time.monotonic()))
    late = [cam.config.id for cam in cams if cam.is_alive()]
    if late:
        named = ", ".join(late[:LATE_NAMED]) + (f" and {len(late) - LATE_NAMED} more" if len(late) > LATE_NAMED else "")
        log.warning("%d camera(s) did not stop within %.1fs, left to end on their own: %s", len(late),
                    timeout_s, named)


class CameraRegistry:
    """The running cameras by id. Used by the supervisor thread and by callers of add/remove
    (reload, the bench); the lock keeps a lookup from seeing half an update."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraHandle] = {}

    def add(self, handle: CameraHandle) -> None:
        with self._lock:
            self._cameras[handle.config.id] = handle

    def pop(self, camera_ids: Iterable[str]) -> list[CameraHandle]:
        """Forget these cameras (the unknown ids are skipped) and return their handles."""
        with self._lock:
            return [self._cameras.pop(cid) for cid in camera_ids if cid in self._cameras]

    def handles(self) -> list[CameraHandle]:
        with self._lock:
            return list(self._cameras.values())

    def __contains__(self, camera_id: object) -> bool:
        with self._lock:
            return camera_id in self._cameras

    def all_ended(self) -> bool:
        """True when there are cameras and none of them runs any more (files at their end)."""
        handles = self.handles()
        return bool(handles) and not any(h.is_alive() for h in handles)

    def stop_all(self) -> list[CameraHandle]:
        """Ask every camera to stop (they stay registered); their handles, to join."""
        handles = self.handles()
        for h in handles:
            h.request_stop()
        return handles
