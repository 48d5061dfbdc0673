"""The inference stage one batch behind (app/lookahead.py): the next batch is submitted before the
previous one is waited for, results leave in order, a quiet queue finishes the pending batch, and a
backend that runs batches inside submit() behaves as a plain stage. The backend here is a stand-in
whose submit() returns the real Queued/Completed types: the queueing itself needs a GPU (tests/gpu)."""
from __future__ import annotations

import queue
import threading
import time

import numpy as np

from pipeline.app.lookahead import FINISH, LookaheadInbox, LookaheadInfer
from pipeline.app.stages import END, StageShared
from pipeline.frame import Frame, InferenceResult, LetterboxTransform, OutputLayout, TensorBatch
from pipeline.infer.base import Completed, Queued
from pipeline.observe.metrics import Metrics


def batch(name: str) -> TensorBatch:
    frame = Frame(name, 0, None, 0.0, 8, 8, None)
    return TensorBatch(frames=(frame,), transforms=(LetterboxTransform.fit(8, 8, 8),), tensor=np.zeros((1, 3, 8, 8)),
                       formed_at=0.0)


class QueueingBackend:
    """submit() records the call and returns a Queued whose result() records the wait."""

    def __init__(self, fail: set[str] = frozenset(), queues: bool = True) -> None:
        self.calls: list[str] = []
        self._fail, self._queues = fail, queues

    def submit(self, b: TensorBatch):
        name = b.frames[0].camera_id
        self.calls.append(f"submit {name}")

        def finish() -> InferenceResult:
            self.calls.append(f"wait {name}")
            if name in self._fail:
                raise RuntimeError("device lost")
            return InferenceResult(b.frames, b.transforms, np.full((1, 6, 1), len(self.calls), np.float32), 0.0,
                                   OutputLayout.CANDIDATES)
        return Queued(finish) if self._queues else Completed(finish())


def shared() -> StageShared:
    return StageShared(Metrics(), threading.Event())


def names(results) -> list[str]:
    return [r.frames[0].camera_id for r in results]


def test_submits_the_next_batch_before_waiting_for_the_one_before() -> None:
    backend = QueueingBackend()
    work = LookaheadInfer(backend, shared())
    assert work.wait_s() is None
    assert work(batch("a")) == []
    assert work.wait_s() is not None  # a is pending
    assert names(work(batch("b"))) == ["a"]
    assert names(work(FINISH)) == ["b"]
    assert work(FINISH) == [] and work.wait_s() is None
    assert backend.calls == ["submit a", "submit b", "wait a", "wait b"]


def test_a_backend_that_runs_inside_submit_is_a_plain_stage() -> None:
    work = LookaheadInfer(QueueingBackend(queues=False), shared())
    assert names(work(batch("a"))) == ["a"] and work.wait_s() is None
    assert names(work(batch("b"))) == ["b"]


def test_a_failed_pending_batch_is_counted_and_the_next_goes_on() -> None:
    s = shared()
    work = LookaheadInfer(QueueingBackend(fail={"a"}), s)
    work(batch("a"))
    assert work(batch("b")) == []  # a failed while b was queued
    assert s.metrics.frames_dropped.value("a", "inference_error") == 1
    assert names(work(FINISH)) == ["b"]


def test_abandon_gives_the_pending_batch_cameras_once() -> None:
    work = LookaheadInfer(QueueingBackend(), shared())
    work(batch("a"))
    assert work.abandon() == ("a",) and work.abandon() == ()
    assert work(FINISH) == []


def test_inbox_finishes_the_pending_batch_when_no_next_one_comes_in_time() -> None:
    work = LookaheadInfer(QueueingBackend(), shared())
    q: "queue.Queue" = queue.Queue()
    inbox = LookaheadInbox(q, work)
    q.put(batch("a"))
    assert names([inbox.take()]) == ["a"]  # nothing pending: blocks for it
    work(batch("a"))
    started = time.monotonic()
    assert inbox.take() is FINISH  # nothing queued within the pending batch's expected GPU time
    assert time.monotonic() - started < 1.0
    q.put(batch("b"))
    assert names([inbox.take()]) == ["b"]  # a batch that is there is taken first


def test_inbox_finishes_the_pending_batch_before_the_end() -> None:
    work = LookaheadInfer(QueueingBackend(), shared())
    q: "queue.Queue" = queue.Queue()
    inbox = LookaheadInbox(q, work)
    work(batch("a"))
    q.put(END)
    assert inbox.take() is FINISH
    assert names(work(FINISH)) == ["a"]
    assert inbox.take() is END
