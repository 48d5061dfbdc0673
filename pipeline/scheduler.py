"""n:1 batching of frames from many cameras into one model batch.

Producers (one thread per camera) call `put`; one consumer calls `next_batch`. A batch is
released when `max_batch` frames are queued in total, when the oldest queued frame has waited
`max_wait_s`, or when the scheduler is closed and frames remain. Frames are taken round robin
across cameras so a busy camera cannot starve a quiet one.

Time: `clock` (monotonic seconds) stamps frames at `put` and decides frame ages; blocking calls
wait in real seconds, so a fake clock is only meaningful with `poll(now)`.
"""
from __future__ import annotations

import enum
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from pipeline.frame import Frame, FrameBatch
from pipeline.observe.metrics import Metrics


class OverflowPolicy(str, enum.Enum):
    """What `put` does when a camera's queue is full."""

    DROP_OLDEST = "drop_oldest"  # live cameras, realtime files: stay current, count the loss
    WAIT = "wait"  # files read as fast as possible: back-pressure, lose nothing


@dataclass
class _CameraQueue:
    """One camera's FIFO of (enqueue time, frame). `removed` releases puts blocked on this queue."""

    policy: OverflowPolicy
    capacity: int
    frames: deque[tuple[float, Frame]] = field(default_factory=deque)
    removed: bool = False


class BatchScheduler:
    def __init__(
        self,
        max_batch: int,
        max_wait_s: float,
        queue_per_camera: int,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"scheduler: max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"scheduler: max_wait_s must be >= 0, got {max_wait_s}")
        if queue_per_camera < 1:
            raise ValueError(f"scheduler: queue_per_camera must be >= 1, got {queue_per_camera}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue_per_camera = queue_per_camera
        self._clock = clock
        self._metrics = metrics
        self._lock = threading.Lock()
        self._frames_ready = threading.Condition(self._lock)  # consumer waits here
        self._space_free = threading.Condition(self._lock)  # WAIT-policy producers wait here
        self._queues: dict[str, _CameraQueue] = {}  # insertion order is the round-robin order
        self._dropped: dict[str, int] = {}  # survives removal; also marks ids ever added
        self._queued = 0
        self._last_served: str | None = None  # the next batch starts with the camera after this one
        self._closed = False

    # ---- cameras -------------------------------------------------------------------------

    def add_camera(self, camera_id: str, policy: OverflowPolicy, capacity: int | None = None) -> None:
        """`capacity`: this camera's queue length instead of queue_per_camera (decode workers'
        back-pressured cameras get a queue as deep as their credits, so a put never blocks)."""
        if capacity is not None and capacity < 1:
            raise ValueError(f"scheduler: capacity must be >= 1, got {capacity}")
        with self._lock:
            if camera_id in self._queues:
                raise ValueError(f"scheduler: camera {camera_id!r} is already added")
            queue = self._queues[camera_id] = _CameraQueue(OverflowPolicy(policy), capacity or self.queue_per_camera)
            self._dropped.setdefault(camera_id, 0)
            if self._metrics is not None:  # read when scraped: not a gauge update (and its locks) per frame
                self._metrics.queue_depth.labels(camera_id).set_function(lambda: len(queue.frames))

    def remove_camera(self, camera_id: str) -> list[Frame]:
        """Forget a camera; returns its still-queued frames so the caller can count them."""
        with self._lock:
            queue = self._queue_or_raise(camera_id)
            if self._last_served == camera_id:
                # Keep the rotation where it was: "after the removed camera" = "after its predecessor".
                ids = list(self._queues)
                pos = ids.index(camera_id)
                self._last_served = ids[pos - 1] if len(ids) > 1 else None
            del self._queues[camera_id]
            queue.removed = True
            leftovers = [frame for _, frame in queue.frames]
            queue.frames.clear()
            self._queued -= len(leftovers)
            if self._metrics is not None:
                self._metrics.queue_depth.labels(camera_id).set_function(lambda: 0)
            self._space_free.notify_all()  # a put blocked on this camera returns False
            self._frames_ready.notify_all()  # closed and now empty: the consumer must see it
            return leftovers

    def cameras(self) -> list[str]:
        with self._lock:
            return list(self._queues)

    def depth(self, camera_id: str) -> int:
        with self._lock:
            return len(self._queue_or_raise(camera_id).frames)

    def dropped(self, camera_id: str) -> int:
        """Frames this camera lost to a full DROP_OLDEST queue (kept after removal)."""
        with self._lock:
            return self._dropped.get(camera_id, 0)

    # ---- producers -----------------------------------------------------------------------

    def put(self, frame: Frame, timeout: float | None = None) -> bool:
        """Queue a frame; True if queued.

        DROP_OLDEST never blocks. WAIT blocks until there is room, and returns False if the
        scheduler closes, the camera is removed, or `timeout` real seconds pass first.
        A False return means the frame was not queued (the caller still owns it).
        """
        camera_id = frame.camera_id
        dropped = None  # a dropped frame is freed after the lock (its release may message a decode worker)
        with self._lock:
            queue = self._queues.get(camera_id)
            if queue is None:
                if camera_id in self._dropped:
                    return False  # removed while its source was still delivering
                raise KeyError(f"scheduler: frame from unknown camera {camera_id!r} (add_camera first)")
            if self._closed:
                return False
            if len(queue.frames) >= queue.capacity:
                if queue.policy is OverflowPolicy.DROP_OLDEST:
                    dropped = queue.frames.popleft()
                    self._queued -= 1
                    self._dropped[camera_id] += 1
                    if self._metrics is not None:
                        self._metrics.frames_dropped.labels(camera_id, "queue_full").inc()
                elif not self._wait_for_room(queue, timeout):
                    return False
            was_empty = self._queued == 0
            queue.frames.append((self._clock(), frame))
            self._queued += 1
            # Wake the consumer only when its wait target changes: a first frame sets a deadline,
            # a full batch is ready now.
            if was_empty or self._queued >= self.max_batch:
                self._frames_ready.notify()
            return True

    def _wait_for_room(self, queue: _CameraQueue, timeout: float | None) -> bool:
        """Holding the lock, block until `queue` has room. False on close, removal or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(queue.frames) >= queue.capacity:
            if self._closed or queue.removed:
                return False
            if deadline is None:
                self._space_free.wait()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._space_free.wait(remaining)
        return not (self._closed or queue.removed)

    # ---- consumer ------------------------------------------------------------------------

    def close(self) -> None:
        """No more puts; frames already queued still come out."""
        with self._lock:
            self._closed = True
            self._space_free.notify_all()
            self._frames_ready.notify_all()

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    @property
    def closed_and_empty(self) -> bool:
        with self._lock:
            return self._closed and self._queued == 0

    def poll(self, now: float) -> FrameBatch | None:
        """Release a batch if one is due at `now` (clock seconds); never blocks, never reads the clock."""
        with self._lock:
            return self._poll_locked(now)

    def next_batch(self, timeout: float | None = None) -> FrameBatch | None:
        """Block until a batch is due. None on timeout (real seconds) or when closed and empty."""
        give_up_at = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                now = self._clock()
                batch = self._poll_locked(now)
                if batch is not None:
                    return batch
                if self._closed and self._queued == 0:
                    return None
                wait_s: float | None = None
                if self._queued:
                    # Sleep exactly until the oldest frame's deadline; poll said it is not due,
                    # so this is > 0.
                    wait_s = self._oldest_enqueued() + self.max_wait_s - now
                if give_up_at is not None:
                    remaining = give_up_at - time.monotonic()
                    if remaining <= 0:
                        return None
                    wait_s = remaining if wait_s is None else min(wait_s, remaining)
                self._frames_ready.wait(wait_s)

    # ---- internals (lock held) -----------------------------------------------------------

    def _poll_locked(self, now: float) -> FrameBatch | None:
        if self._queued == 0:
            return None
        due = (
            self._queued >= self.max_batch
            or self._closed
            or now >= self._oldest_enqueued() + self.max_wait_s  # same sum next_batch waits for
        )
        if not due:
            return None
        return self._form_batch(now)

    def _oldest_enqueued(self) -> float:
        # Enqueue times rise within a camera, so the oldest frame is one of the queue heads.
        return min(q.frames[0][0] for q in self._queues.values() if q.frames)

    def _form_batch(self, now: float) -> FrameBatch:
        ids = list(self._queues)
        start = ids.index(self._last_served) + 1 if self._last_served in self._queues else 0
        order = ids[start:] + ids[:start]
        taken: list[tuple[float, Frame]] = []
        while len(taken) < self.max_batch and len(taken) < self._queued:
            for camera_id in order:
                queue = self._queues[camera_id]
                if not queue.frames:
                    continue
                taken.append(queue.frames.popleft())
                self._last_served = camera_id
                if len(taken) == self.max_batch:
                    break
        self._queued -= len(taken)
        oldest_wait_s = now - min(t for t, _ in taken)
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(taken))
            self._metrics.batch_wait.observe(max(0.0, oldest_wait_s))
        self._space_free.notify_all()
        return FrameBatch(frames=tuple(f for _, f in taken), formed_at=now, oldest_wait_s=oldest_wait_s)

    def _queue_or_raise(self, camera_id: str) -> _CameraQueue:
        queue = self._queues.get(camera_id)
        if queue is None:
            raise KeyError(f"scheduler: unknown camera {camera_id!r}")
        return queue

