"""Two batches on the GPU at once from one inference thread (issue 22).

A backend that queues ahead (ONNX Runtime with its own CUDA graph, infer/onnxruntime/gpu_sessions.py)
returns from `submit(batch)` before the batch has run. The inference stage then works one batch
behind: it submits batch N+1 and only then waits for batch N and hands N's result on, so the GPU
has N+1 queued while the thread waits for the interpreter lock between batches (2-4 ms a batch with
135 cameras on the H200, the whole gap that kept end to end under the inference ceiling).

    LookaheadInfer   the stage's work: submit the new batch, finish the one before (in order)
    LookaheadInbox   the stage's inbox: with a batch pending, waits for the next batch only as long
                     as the pending one should still take on the GPU, then says FINISH, so a quiet
                     pipeline gets each result as soon as it is there

A backend whose submit() runs the batch right away (CPU, TensorRT, a model that cannot be captured)
is never pending: then the stage behaves exactly as a plain one.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from pipeline.app.stages import END, StageShared
from pipeline.frame import InferenceResult, TensorBatch
from pipeline.infer.base import Submitted

log = logging.getLogger("pipeline.app.lookahead")

INITIAL_GPU_S = 0.010  # until a batch has been measured: about one YOLOv8n batch of 32 on a big GPU
BLOCKED_S = 0.0005  # a wait for a result shorter than this did not wait for the GPU: not a sample


class _Finish:
    """The inbox's marker: no new batch came in time; hand on the pending one."""

    frames = ()  # what StageThread counts: no frames of its own

    def __repr__(self) -> str:
        return "FINISH"


FINISH = _Finish()


class LookaheadInfer:
    """`work(item)` of the inference stage (one model copy): see the module docs."""

    def __init__(self, backend: Any, shared: StageShared) -> None:
        self._backend = backend
        self._shared = shared
        self._lock = threading.Lock()
        self._pending: tuple[TensorBatch, Submitted, float] | None = None  # batch, its run, when submitted
        self._gpu_s = INITIAL_GPU_S  # moving average of a batch's time on the GPU
        self._last_done = 0.0

    def __call__(self, item: Any) -> list[InferenceResult]:
        if item is FINISH:
            return self._finish_pending()
        submitted = self._backend.submit(item)  # raises: StageThread counts this batch as dropped
        outputs = self._finish_pending()  # after the submit: the GPU has the new batch queued meanwhile
        if submitted.done:
            outputs.append(submitted.result())
        else:
            with self._lock:
                self._pending = (item, submitted, time.monotonic())
        return outputs

    def wait_s(self) -> float | None:
        """How long the inbox may wait for the next batch (the pending one's expected time left on the
        GPU); None when nothing is pending."""
        with self._lock:
            if self._pending is None:
                return None
            started = max(self._pending[2], self._last_done)
        return max(0.0, started + self._gpu_s - time.monotonic())

    def abandon(self) -> tuple[str, ...]:
        """At shutdown, past the drain deadline: forget the pending batch; its frames' cameras."""
        with self._lock:
            pending, self._pending = self._pending, None
        return tuple(f.camera_id for f in pending[0].frames) if pending is not None else ()

    def _finish_pending(self) -> list[InferenceResult]:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return []
        batch, submitted, submitted_at = pending
        asked = time.monotonic()
        try:
            result = submitted.result()
        except Exception as exc:  # this batch only; the one just submitted goes on
            log.error("inference failed for a batch of %d: %s", len(batch.frames), exc)
            self._shared.count_dropped(tuple(f.camera_id for f in batch.frames), "inference_error")
            return []
        done = time.monotonic()
        if done - asked > BLOCKED_S:  # it waited for the GPU: done is when the batch finished
            self._gpu_s = 0.8 * self._gpu_s + 0.2 * (done - max(submitted_at, self._last_done))
        self._last_done = done
        return [result]


class LookaheadInbox:
    """The inference stage's queue, for LookaheadInfer (see the module docs)."""

    def __init__(self, q: "queue.Queue[Any]", infer: LookaheadInfer) -> None:
        self.queue = q
        self._infer = infer
        self._ended = False

    def take(self) -> Any:
        if self._ended:
            return END
        wait = self._infer.wait_s()
        if wait is None:
            return self.queue.get()
        try:
            item = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
        except queue.Empty:
            return FINISH
        if item is END:  # the pending batch first
            self._ended = True
            return FINISH
        return item

    def give_back_end(self) -> None:
        self.queue.put(END)
