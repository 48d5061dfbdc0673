"""The publish stage's queue: detections batches, bounded on their own, and status and event messages.

A publisher that falls behind (its thread waits for the interpreter lock like every other) let up to
264 batches wait here, ~8,000 frames: on the H200 at 126-135 cameras, runs that fell behind at the
start stayed behind with 0.5-1.3 s of latency (docs/BENCHMARKS.md, issue 22 session 6). With at most
`max_batches` batches waiting, a slow publisher holds back postprocess, then inference, and the
scheduler drops each camera's oldest frame: the newest frames go on and latency stays bounded.
Status and event messages keep room of their own, so a camera thread reporting a state never waits
on detections."""
from __future__ import annotations

import queue
import threading
from typing import Any

from pipeline.frame import DetectionsBatch


class PublishQueue(queue.Queue):  # type: ignore[type-arg]
    def __init__(self, max_batches: int, max_messages: int) -> None:
        super().__init__(maxsize=max_batches + max_messages)
        self._batch_slots = threading.Semaphore(max_batches)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """A DetectionsBatch waits for a batch slot first (always blocking: its producer is a stage
        thread, held back on purpose); anything else only for room in the queue."""
        if isinstance(item, DetectionsBatch):
            self._batch_slots.acquire()
            try:
                super().put(item, block, timeout)
            except BaseException:
                self._batch_slots.release()
                raise
        else:
            super().put(item, block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        item = super().get(block, timeout)
        if isinstance(item, DetectionsBatch):
            self._batch_slots.release()
        return item
