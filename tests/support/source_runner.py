"""Run a real Source in its own thread and record what it emits, with deadline-based waits."""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

from pipeline.config import CameraConfig, DecodeConfig
from pipeline.frame import CameraState, Frame, StatusEvent
from pipeline.observe.metrics import Metrics
from pipeline.sources import create_source


class SourceRunner:
    """`sink_hook(frame)` runs inside the sink (e.g. to block, raise, or set stop).
    With keep_images=False the recorded frames have image=None."""

    def __init__(self, camera: CameraConfig, sink_hook: Callable[[Frame], None] | None = None,
                 keep_images: bool = True, decode: DecodeConfig | None = None) -> None:
        self.camera = camera
        self.metrics = Metrics()
        self.stop = threading.Event()
        self.frames: list[Frame] = []
        self.events: list[StatusEvent] = []
        self._sink_hook = sink_hook
        self._keep_images = keep_images
        self._changed = threading.Condition()
        self.source = create_source(camera, decode or DecodeConfig(), self._sink, self._status, self.stop, self.metrics)
        self.thread = threading.Thread(target=self.source.run, name=f"test-{camera.id}", daemon=True)
        self.stopped_at: float | None = None

    # sink / status callbacks (source threads)
    def _sink(self, frame: Frame) -> None:
        if self._sink_hook is not None:
            self._sink_hook(frame)
        if not self._keep_images:  # long runs: keep the metadata, not megabytes of pixels
            frame = dataclasses.replace(frame, image=None)
        with self._changed:
            self.frames.append(frame)
            self._changed.notify_all()

    def _status(self, event: StatusEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    # test side
    def start(self) -> "SourceRunner":
        self.thread.start()
        return self

    def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))
            return True

    def wait_for_state(self, state: CameraState, timeout_s: float, after: int = 0) -> StatusEvent:
        """The first event in `state` at position >= `after` in self.events; fails on timeout."""
        found: list[StatusEvent] = []

        def seen() -> bool:
            found[:] = [e for e in self.events[after:] if e.state is state]
            return bool(found)

        if not self.wait_until(seen, timeout_s):
            raise AssertionError(f"no {state.value} within {timeout_s} s; events: {self.describe_events()}")
        return found[0]

    def wait_for_frames(self, count: int, timeout_s: float) -> None:
        if not self.wait_until(lambda: len(self.frames) >= count, timeout_s):
            raise AssertionError(f"{len(self.frames)} of {count} frames within {timeout_s} s; "
                                 f"events: {self.describe_events()}")

    def join(self, timeout_s: float) -> float:
        """Wait for run() to return; seconds it took (fails if it does not)."""
        t0 = time.monotonic()
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise AssertionError(f"run() still running after {timeout_s} s; events: {self.describe_events()}")
        return time.monotonic() - t0

    def stop_and_join(self, timeout_s: float = 1.0) -> float:
        """Set stop and wait for run() to return; seconds from stop to return."""
        self.stop.set()
        return self.join(timeout_s)

    def states(self) -> list[CameraState]:
        with self._changed:
            return [e.state for e in self.events]

    def describe_events(self) -> str:
        return "; ".join(f"{e.state.value}: {e.reason}" for e in list(self.events))
