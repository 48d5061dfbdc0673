"""One reusable stage thread: take an item, run the stage's work on it, hand each output on.

    stage = StageThread("postprocess", take=QueueInbox(results), work=[postprocess],
                        outbox=detections, shared=shared, timed_as="postprocess")

Every stage of the daemon (batch/preprocess, infer, postprocess, publish) is one StageThread; the
daemon only makes the queues and connects them. What a StageThread does for every stage alike:
- a failed item is logged (one line) and its frames counted as dropped (`<step>_error`); the next
  item still runs;
- past the drain deadline (`shared.abort`, set by shutdown) items are counted as dropped
  (`shutdown`) instead of processed, unless the stage is told to finish everything (publish);
- the frames it holds right now are `in_flight()`, so shutdown can count them if it gives up;
- the END marker (or an inbox that says it has ended) stops it; its last thread to stop puts END
  on the outbox (unless the outbox has other producers) and sets `done`;
- several threads (`work` has one function per thread, e.g. one per model copy) take from one queue;
  with `ordered=True` their outputs leave in the order the items came (TurnOrder);
- `prepare` runs first on each thread, one thread at a time, and start() waits for it (ONNX
  Runtime's CUDA graphs are recorded on the thread that runs them, with the GPU to itself).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence

from pipeline.app.turn_order import TurnOrder
from pipeline.observe.metrics import Metrics
from pipeline.scheduler import BatchScheduler

log = logging.getLogger("pipeline.app.stages")

END = object()  # end-of-stream marker passed down the stage queues
POLL_S = 0.2  # an inbox with no item yet is asked again after this long
PREPARE_S = 120.0  # start() waits this long for a thread's prepare() before starting the next one

Work = Callable[[Any], Iterable[Any]]  # one input item -> its outputs (none, one or many)


@dataclass(frozen=True)
class StageShared:
    """What every stage of one daemon shares."""

    metrics: Metrics
    abort: threading.Event  # the drain deadline passed: drop instead of process

    def count_dropped(self, cameras: Iterable[str], reason: str) -> None:
        for camera in cameras:
            self.metrics.frames_dropped.labels(camera, reason).inc()


def batch_cameras(item: Any) -> tuple[str, ...]:
    """The camera of each frame of a FrameBatch / TensorBatch / InferenceResult."""
    return tuple(f.camera_id for f in item.frames)


class Inbox(Protocol):
    def take(self) -> Any:
        """The next item, END when there will be none, or None when none came within a short wait."""

    def give_back_end(self) -> None:
        """Put END back for the stage's other threads."""


class QueueInbox:
    def __init__(self, q: "queue.Queue[Any]") -> None:
        self.queue = q

    def take(self) -> Any:
        return self.queue.get()

    def give_back_end(self) -> None:
        self.queue.put(END)


class SchedulerInbox:
    """The batch stage's input. Adaptive batching: the next batch is formed only once inference has
    taken the previous one (`release`), so while the model is busy frames gather in the scheduler and
    the next batch is fuller (max_wait_ms still bounds the wait when the model is idle). One batch
    waits, preprocessed, while another runs, so the model never waits for preprocessing. (Holding a
    partial batch back further while the model runs was tried and measured worse: the model then
    waits for preprocessing; docs/BENCHMARKS.md.) With N model instances, N batches may run and N wait."""

    def __init__(self, scheduler: BatchScheduler, slots: int) -> None:
        self._scheduler = scheduler
        self._slots = threading.Semaphore(slots)

    def take(self) -> Any:
        if not self._slots.acquire(timeout=POLL_S):
            return END if self._scheduler.closed_and_empty else None
        batch = self._scheduler.next_batch(timeout=POLL_S)
        if batch is None:
            self._slots.release()
            return END if self._scheduler.closed_and_empty else None
        return batch

    def give_back_end(self) -> None:  # one batch thread: nobody to give it to
        pass

    def release(self, _item: Any = None) -> None:
        """A batch has gone to inference, or was given up: the next one may form."""
        self._slots.release()


class StageThread:
    def __init__(self, name: str, inbox: Inbox, work: Sequence[Work], shared: StageShared, *,
                 outbox: "queue.Queue[Any] | None" = None, ends_outbox: bool = True,
                 timed_as: str | None = None, error_name: str | None = None,
                 cameras_of: Callable[[Any], tuple[str, ...]] = batch_cameras,
                 drops_on_abort: bool = True, ordered: bool = False,
                 prepare: Sequence[Callable[[], None]] = (),
                 on_take: Callable[[Any], None] | None = None,
                 on_discard: Callable[[Any], None] | None = None) -> None:
        """`name`: the thread's name (`name-0`, `name-1`, ... with several); `error_name`: what the
        error line and the drop reason call the step (default `name`); `timed_as`: the
        pipeline_stage_seconds label of the work (None: not timed); `on_take(item)`: right after an
        item is taken; `on_discard(item)`: an item ended without output (dropped, failed, empty)."""
        if ordered and not isinstance(inbox, QueueInbox):
            raise ValueError(f"stage {name}: ordered threads need a queue inbox")
        self.name = name
        self.done = threading.Event()  # every thread of this stage has stopped
        self._inbox = inbox
        self._work = list(work)
        self._prepare = list(prepare)
        self._shared = shared
        self._outbox = outbox
        self._ends_outbox = ends_outbox
        self._timed_as = timed_as
        self._error_name = error_name or name
        self._cameras_of = cameras_of
        self._drops_on_abort = drops_on_abort
        self._order = TurnOrder() if ordered else None
        self._on_take = on_take
        self._on_discard = on_discard
        self._running = len(self._work)
        self._lock = threading.Lock()
        self._holding: dict[int, tuple[str, ...]] = {}  # lane -> cameras of the frames it holds
        self._taken = (0, 0)  # items, frames
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        several = len(self._work) > 1
        for lane, work in enumerate(self._work):
            prepared = threading.Event()
            thread_name = f"{self.name}-{lane}" if several else self.name
            thread = threading.Thread(target=self._run, args=(lane, work, prepared), name=thread_name, daemon=True)
            self.threads.append(thread)
            thread.start()
            if not prepared.wait(PREPARE_S):
                log.warning("%s: thread %s was not ready after %.0f s; starting anyway", self.name,
                            thread_name, PREPARE_S)

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout)
            if t.is_alive():
                log.warning("%s thread did not stop within %.1fs", t.name, timeout)

    def taken(self) -> tuple[int, int]:
        """(items, frames) this stage has taken from its inbox so far."""
        with self._lock:
            return self._taken

    def in_flight(self) -> tuple[str, ...]:
        """The cameras of the frames this stage is working on (or waiting to hand on) right now."""
        return tuple(c for cams in list(self._holding.values()) for c in cams)

    # ------------------------------------------------------------------ on the stage's threads

    def _run(self, lane: int, work: Work, prepared: threading.Event) -> None:
        try:
            self._prepare_lane(lane, prepared)
            while True:
                ticket, item = self._take()
                if item is END:
                    self._inbox.give_back_end()  # for the stage's other threads
                    return
                if item is not None:  # None: nothing came within the inbox's short wait
                    self._handle(lane, work, ticket, item)
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                if self._ends_outbox and self._outbox is not None:
                    self._outbox.put(END)
                self.done.set()

    def _prepare_lane(self, lane: int, prepared: threading.Event) -> None:
        try:
            if lane < len(self._prepare):
                self._prepare[lane]()
        except Exception as exc:  # noqa: BLE001 - the stage still runs, without what prepare() set up
            log.error("%s: preparing thread %s failed (it runs anyway): %s", self._error_name,
                      threading.current_thread().name, exc)
        finally:
            prepared.set()

    def _handle(self, lane: int, work: Work, ticket: int | None, item: Any) -> None:
        self._count_taken(item)
        if self._on_take is not None:
            self._on_take(item)
        outputs: list[Any] = []
        try:
            outputs = self._process(lane, work, item)
        finally:  # every ticket takes its turn, or the later items' threads wait for ever
            with self._order.turn(ticket) if ticket is not None else nullcontext():
                for out in outputs:
                    assert self._outbox is not None, f"stage {self.name} has outputs but no outbox"
                    self._outbox.put(out)
                self._holding.pop(lane, None)
        if not outputs and self._on_discard is not None:
            self._on_discard(item)

    def _count_taken(self, item: Any) -> None:
        frames = len(self._cameras_of(item))
        with self._lock:
            self._taken = (self._taken[0] + 1, self._taken[1] + frames)

    def _take(self) -> tuple[int | None, Any]:
        """(ticket, item); the ticket is None unless the stage is ordered."""
        if self._order is not None:
            assert isinstance(self._inbox, QueueInbox)
            return self._order.take(self._inbox.queue)
        return None, self._inbox.take()

    def _process(self, lane: int, work: Work, item: Any) -> list[Any]:
        """The item's outputs; [] when it was dropped or failed (counted). Its frames stay in
        in_flight() until the caller has handed the outputs on."""
        cameras = self._cameras_of(item)
        if self._drops_on_abort and self._shared.abort.is_set():
            self._shared.count_dropped(cameras, "shutdown")
            return []
        self._holding[lane] = cameras
        started = time.perf_counter()
        try:
            outputs = list(work(item))
        except Exception as exc:  # one bad item must not stop the pipeline
            batch = f" for a batch of {len(cameras)}" if hasattr(item, "frames") else ""
            log.error("%s failed%s: %s", self._error_name, batch, exc)
            self._shared.count_dropped(cameras, f"{self._error_name}_error")
            self._holding.pop(lane, None)
            return []
        if self._timed_as is not None:
            self._shared.metrics.stage_seconds.labels(self._timed_as).observe(time.perf_counter() - started)
        return outputs
