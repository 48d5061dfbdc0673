"""StageThread (pipeline/app/stages.py) on its own: real threads, real queues, real Metrics; the
items are small batches of frames from cameras (only their camera ids matter to a stage)."""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.app.stages import END, QueueInbox, SchedulerInbox, StageShared, StageThread
from pipeline.frame import Frame
from pipeline.observe.metrics import Metrics
from pipeline.scheduler import BatchScheduler, OverflowPolicy


@dataclass(frozen=True)
class Cam:
    camera_id: str


@dataclass(frozen=True)
class Batch:
    n: int
    frames: tuple[Cam, ...] = (Cam("a"), Cam("b"))


def drain(q: "queue.Queue[Any]", timeout: float = 5.0) -> list[Any]:
    """Everything up to the END marker."""
    out = []
    while (item := q.get(timeout=timeout)) is not END:
        out.append(item)
    return out


def feed(n: int) -> "queue.Queue[Any]":
    q: queue.Queue[Any] = queue.Queue()
    for i in range(n):
        q.put(Batch(i))
    q.put(END)
    return q


def test_a_failing_item_is_logged_and_counted_and_the_next_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    metrics, out = Metrics(), queue.Queue()

    def work(batch: Batch) -> list[int]:
        if batch.n == 1:
            raise RuntimeError("bad weights")
        return [batch.n, batch.n * 10]

    stage = StageThread("post", QueueInbox(feed(3)), [work], StageShared(metrics, threading.Event()),
                        outbox=out, timed_as="postprocess")
    with caplog.at_level(logging.ERROR, logger="pipeline.app.stages"):
        stage.start()
        assert drain(out) == [0, 0, 2, 20]  # outputs in order, then END handed on
    assert stage.done.wait(2)
    assert [r.getMessage() for r in caplog.records] == ["post failed for a batch of 2: bad weights"]
    assert metrics.frames_dropped.value("a", "post_error") == metrics.frames_dropped.value("b", "post_error") == 1
    assert metrics.value("pipeline_stage_seconds_count", stage="postprocess") == 2  # the successful ones
    assert stage.taken() == (3, 6)


def test_past_the_drain_deadline_items_are_counted_not_processed() -> None:
    metrics, abort = Metrics(), threading.Event()
    abort.set()
    shared = StageShared(metrics, abort)
    ran: list[int] = []
    out: queue.Queue[Any] = queue.Queue()
    dropping = StageThread("infer", QueueInbox(feed(2)), [lambda b: ran.append(b.n) or [b]], shared, outbox=out)
    dropping.start()
    assert drain(out) == [] and ran == []
    assert metrics.frames_dropped.value("a", "shutdown") == 2
    finishing = StageThread("publish", QueueInbox(feed(2)), [lambda b: ran.append(b.n) or []], shared,
                            drops_on_abort=False)
    finishing.start()
    assert finishing.done.wait(2) and ran == [0, 1]


def test_ordered_threads_hand_results_on_in_the_order_items_came() -> None:
    inbox, out = feed(12), queue.Queue()
    ran_on: dict[int, str] = {}

    def slow_lane(batch: Batch) -> list[int]:  # lane 0 is slow: lane 1 overtakes it
        time.sleep(0.03)
        return quick_lane(batch)

    def quick_lane(batch: Batch) -> list[int]:
        ran_on[batch.n] = threading.current_thread().name
        return [batch.n]

    prepared: list[str] = []
    stage = StageThread("infer", QueueInbox(inbox), [slow_lane, quick_lane], StageShared(Metrics(), threading.Event()),
                        outbox=out, ordered=True,
                        prepare=[lambda: prepared.append(threading.current_thread().name)] * 2)
    stage.start()
    assert prepared == ["infer-0", "infer-1"]  # each on its own thread, one after the other, before start() returned
    assert drain(out) == list(range(12))
    assert set(ran_on.values()) == {"infer-0", "infer-1"}
    assert stage.done.wait(2) and out.empty()  # one END for all threads


def test_a_failing_prepare_is_logged_and_the_thread_runs_anyway(caplog: pytest.LogCaptureFixture) -> None:
    out: queue.Queue[Any] = queue.Queue()

    def broken() -> None:
        raise RuntimeError("no CUDA graph")

    stage = StageThread("infer", QueueInbox(feed(1)), [lambda b: [b.n]], StageShared(Metrics(), threading.Event()),
                        outbox=out, error_name="inference", prepare=[broken])
    with caplog.at_level(logging.ERROR, logger="pipeline.app.stages"):
        stage.start()
        assert drain(out) == [0]
    assert [r.getMessage() for r in caplog.records] == [
        "inference: preparing thread infer failed (it runs anyway): no CUDA graph"]


def test_frames_being_worked_on_are_in_flight() -> None:
    release, started = threading.Event(), threading.Event()

    def blocking(batch: Batch) -> list[Batch]:
        started.set()
        release.wait(5)
        return [batch]

    out: queue.Queue[Any] = queue.Queue()
    stage = StageThread("postprocess", QueueInbox(feed(1)), [blocking], StageShared(Metrics(), threading.Event()),
                        outbox=out)
    stage.start()
    assert started.wait(5)
    assert stage.in_flight() == ("a", "b")
    release.set()
    assert drain(out) == [Batch(0)]
    assert stage.in_flight() == ()


def test_the_batch_stage_forms_a_batch_only_once_inference_took_the_last_one() -> None:
    scheduler = BatchScheduler(max_batch=1, max_wait_s=0.0, queue_per_camera=8)
    scheduler.add_camera("a", OverflowPolicy.WAIT)
    for i in range(3):
        scheduler.put(Frame("a", i, None, time.time(), 4, 4, None))
    scheduler.close()
    batches = SchedulerInbox(scheduler, slots=1)
    infer_q: queue.Queue[Any] = queue.Queue()
    stage = StageThread("batch", batches, [lambda b: [b]], StageShared(Metrics(), threading.Event()),
                        outbox=infer_q, on_discard=batches.release)
    stage.start()
    first = infer_q.get(timeout=5)
    time.sleep(0.3)
    assert infer_q.empty()  # the second batch waits for its slot
    batches.release(first)  # what the infer stage does when it takes a batch
    assert infer_q.get(timeout=5).frames[0].index == 1
    batches.release()
    assert infer_q.get(timeout=5).frames[0].index == 2
    batches.release()
    assert infer_q.get(timeout=5) is END and stage.done.wait(2)
