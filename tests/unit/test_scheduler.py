"""BatchScheduler: size/wait bounds, fairness, overflow policies, close/remove, blocking waits.

Decisions are tested with a fake clock through poll(now); only the blocking-wait tests use
the real clock, with generous upper bounds and strict lower bounds.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.frame import Frame, FrameBatch
from pipeline.observe.metrics import Metrics
from pipeline.scheduler import BatchScheduler, OverflowPolicy

DROP = OverflowPolicy.DROP_OLDEST
WAIT = OverflowPolicy.WAIT
PIXELS = np.zeros((2, 2, 3), dtype=np.uint8)


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def frame(camera_id: str, index: int) -> Frame:
    return Frame(camera_id, index, None, 0.0, 2, 2, PIXELS)


def ids(batch: FrameBatch) -> list[tuple[str, int]]:
    return [(f.camera_id, f.index) for f in batch.frames]


def make(max_batch=4, max_wait_s=0.05, queue_per_camera=8, cameras=("a",), policy=DROP, clock=None,
         metrics=None) -> BatchScheduler:
    s = BatchScheduler(max_batch, max_wait_s, queue_per_camera, clock=clock or FakeClock(), metrics=metrics)
    for c in cameras:
        s.add_camera(c, policy)
    return s


def start(target) -> tuple[threading.Thread, dict]:
    """Run target in a thread; its return value lands in result['value'] and done is set."""
    result: dict = {"done": threading.Event()}

    def body() -> None:
        result["value"] = target()
        result["done"].set()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, result


# ---- size and wait bounds --------------------------------------------------------------------

def test_full_batch_released_immediately() -> None:
    clock = FakeClock(5.0)
    s = make(max_batch=4, max_wait_s=10.0, cameras=("a", "b"), clock=clock)
    for i in range(3):
        s.put(frame("a" if i % 2 else "b", i))
    assert s.poll(5.0) is None
    s.put(frame("a", 3))
    batch = s.poll(5.0)
    assert batch is not None and len(batch) == 4
    assert batch.formed_at == 5.0 and batch.oldest_wait_s == 0.0
    assert s.poll(5.0) is None


def test_batch_never_exceeds_max_batch() -> None:
    clock = FakeClock()
    s = make(max_batch=3, max_wait_s=10.0, queue_per_camera=10, cameras=("a", "b", "c"), clock=clock)
    for i in range(10):
        for c in ("a", "b", "c"):
            assert s.put(frame(c, i))
    sizes = []
    while (batch := s.poll(clock.t)) is not None:
        sizes.append(len(batch))
    assert sizes == [3] * 10
    s.put(frame("a", 99))
    s.close()
    assert len(s.poll(clock.t)) == 1  # closed: the remainder comes out even below max_batch


def test_lone_frame_released_exactly_at_max_wait() -> None:
    clock = FakeClock(10.0)
    s = make(max_batch=8, max_wait_s=0.02, clock=clock)
    clock.t = 10.0
    s.put(frame("a", 0))
    assert s.poll(10.0) is None
    assert s.poll(10.0199) is None
    batch = s.poll(10.0 + 0.02)
    assert batch is not None and ids(batch) == [("a", 0)]
    assert batch.formed_at == pytest.approx(10.02)
    assert batch.oldest_wait_s == pytest.approx(0.02)


def test_wait_is_measured_from_the_oldest_frame() -> None:
    clock = FakeClock(0.0)
    s = make(max_batch=8, max_wait_s=1.0, cameras=("a", "b"), clock=clock)
    s.put(frame("a", 0))
    clock.t = 0.9
    s.put(frame("b", 0))
    assert s.poll(0.99) is None
    batch = s.poll(1.0)
    assert batch is not None and ids(batch) == [("a", 0), ("b", 0)]
    assert batch.oldest_wait_s == pytest.approx(1.0)


# ---- fairness -------------------------------------------------------------------------------

def test_flooding_camera_cannot_starve_a_quiet_one() -> None:
    clock = FakeClock()
    s = make(max_batch=2, max_wait_s=10.0, queue_per_camera=10, cameras=("a", "b"), clock=clock)
    for i in range(8):
        s.put(frame("a", i))
    s.put(frame("b", 0))
    first = s.poll(clock.t)
    assert first is not None and ids(first) == [("a", 0), ("b", 0)]


def test_every_camera_served_within_ceil_n_over_batch() -> None:
    cams = [f"cam{i}" for i in range(10)]
    clock = FakeClock()
    s = make(max_batch=4, max_wait_s=10.0, queue_per_camera=20, cameras=cams, clock=clock)
    for i in range(5):
        for c in cams:
            s.put(frame(c, i))
    rounds = math.ceil(len(cams) / 4)
    served: set[str] = set()
    for _ in range(rounds):
        batch = s.poll(clock.t)
        assert batch is not None and len(batch) == 4
        in_batch = [f.camera_id for f in batch.frames]
        assert len(set(in_batch)) == 4  # one frame per camera per turn
        served.update(in_batch)
    assert served == set(cams)


def test_rotation_starts_after_the_last_served_camera() -> None:
    clock = FakeClock()
    s = make(max_batch=3, max_wait_s=10.0, queue_per_camera=10, cameras=("a", "b"), clock=clock)
    for i in range(6):
        s.put(frame("a", i))
        s.put(frame("b", i))
    assert ids(s.poll(0)) == [("a", 0), ("b", 0), ("a", 1)]
    assert ids(s.poll(0)) == [("b", 1), ("a", 2), ("b", 2)]
    assert ids(s.poll(0)) == [("a", 3), ("b", 3), ("a", 4)]


def test_removing_the_last_served_camera_keeps_the_rotation() -> None:
    clock = FakeClock()
    s = make(max_batch=2, max_wait_s=10.0, cameras=("a", "b", "c", "d"), clock=clock)
    for c in "abcd":
        s.put(frame(c, 0))
    assert ids(s.poll(0)) == [("a", 0), ("b", 0)]
    s.remove_camera("b")
    s.put(frame("a", 1))
    s.close()
    assert [f.camera_id for f in s.poll(0).frames] == ["c", "d"]


# ---- overflow policies ----------------------------------------------------------------------

def test_drop_oldest_keeps_newest_frames_and_counts_drops() -> None:
    metrics = Metrics()
    clock = FakeClock()
    s = make(max_batch=10, max_wait_s=10.0, queue_per_camera=3, cameras=("a", "b"), clock=clock, metrics=metrics)
    for i in range(7):
        assert s.put(frame("a", i)) is True  # never refuses, never blocks
    s.put(frame("b", 0))
    assert s.depth("a") == 3 and s.dropped("a") == 4 and s.dropped("b") == 0
    assert metrics.value("pipeline_frames_dropped_total", camera="a", reason="queue_full") == 4
    assert metrics.value("pipeline_queue_depth", camera="a") == 3
    s.close()
    assert ids(s.poll(clock.t)) == [("a", 4), ("b", 0), ("a", 5), ("a", 6)]
    assert metrics.value("pipeline_queue_depth", camera="a") == 0


def test_wait_policy_blocks_producer_until_consumer_takes_a_batch() -> None:
    clock = FakeClock()
    s = make(max_batch=2, max_wait_s=10.0, queue_per_camera=2, policy=WAIT, clock=clock)
    assert s.put(frame("a", 0)) and s.put(frame("a", 1))
    t0 = time.monotonic()
    assert s.put(frame("a", 99), timeout=0.05) is False  # full: it waited and gave up
    assert time.monotonic() - t0 >= 0.05
    assert s.depth("a") == 2 and s.dropped("a") == 0

    thread, result = start(lambda: s.put(frame("a", 2)))
    assert not result["done"].wait(0.05)  # still blocked on the full queue
    assert ids(s.poll(clock.t)) == [("a", 0), ("a", 1)]
    assert result["done"].wait(5.0), "producer not released after the batch freed room"
    thread.join(5.0)
    assert result["value"] is True and s.depth("a") == 1


def test_a_camera_capacity_replaces_queue_per_camera_for_that_camera_only() -> None:
    clock = FakeClock()
    s = BatchScheduler(max_batch=10, max_wait_s=10.0, queue_per_camera=2, clock=clock)
    s.add_camera("deep", WAIT, capacity=5)
    s.add_camera("live", DROP, capacity=3)
    s.add_camera("plain", WAIT)
    for i in range(5):
        assert s.put(frame("deep", i), timeout=0.01) is True
    assert s.put(frame("deep", 5), timeout=0.01) is False  # the sixth waits: full at 5
    for i in range(4):
        s.put(frame("live", i))
    assert s.depth("live") == 3 and s.dropped("live") == 1
    assert s.put(frame("plain", 0)) and s.put(frame("plain", 1))
    assert s.put(frame("plain", 2), timeout=0.01) is False  # queue_per_camera still holds here
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        s.add_camera("bad", WAIT, capacity=0)


def test_wait_put_enqueue_time_is_when_it_got_in() -> None:
    clock = FakeClock(0.0)
    s = make(max_batch=2, max_wait_s=1.0, queue_per_camera=1, policy=WAIT, clock=clock)
    s.put(frame("a", 0))
    thread, result = start(lambda: s.put(frame("a", 1)))
    clock.t = 5.0
    s.poll(5.0)  # frees room; the producer stamps its frame now
    assert result["done"].wait(5.0)
    assert s.poll(5.99) is None
    assert ids(s.poll(6.0)) == [("a", 1)]


# ---- close and removal ----------------------------------------------------------------------

def test_close_drains_then_reports_empty() -> None:
    clock = FakeClock()
    s = make(max_batch=10, max_wait_s=100.0, cameras=("a", "b"), clock=clock)
    for i in range(3):
        s.put(frame("a", i))
    s.put(frame("b", 0))
    assert s.poll(clock.t) is None
    assert not s.closed
    s.close()
    assert s.closed and not s.closed_and_empty
    assert s.put(frame("a", 9)) is False
    assert ids(s.next_batch(timeout=1.0)) == [("a", 0), ("b", 0), ("a", 1), ("a", 2)]
    assert s.closed_and_empty
    t0 = time.monotonic()
    assert s.next_batch(timeout=5.0) is None
    assert time.monotonic() - t0 < 1.0


def test_close_releases_blocked_put() -> None:
    s = make(queue_per_camera=1, policy=WAIT)
    s.put(frame("a", 0))
    thread, result = start(lambda: s.put(frame("a", 1)))
    s.close()
    assert result["done"].wait(5.0)
    assert result["value"] is False


def test_remove_camera_returns_queued_and_releases_blocked_put() -> None:
    metrics = Metrics()
    s = make(queue_per_camera=2, cameras=("a", "b"), policy=WAIT, metrics=metrics)
    s.put(frame("a", 0))
    s.put(frame("a", 1))
    s.put(frame("b", 0))
    thread, result = start(lambda: s.put(frame("a", 2)))
    assert not result["done"].wait(0.05)
    leftovers = s.remove_camera("a")
    assert [f.index for f in leftovers] == [0, 1]
    assert result["done"].wait(5.0), "blocked put not released by remove_camera"
    assert result["value"] is False
    assert s.cameras() == ["b"]
    assert s.put(frame("a", 3)) is False  # late frame from a removed camera: refused, not an error
    assert metrics.value("pipeline_queue_depth", camera="a") == 0
    s.close()
    assert ids(s.poll(0)) == [("b", 0)]


def test_remove_camera_wakes_consumer_when_closed_and_now_empty() -> None:
    s = make(max_wait_s=100.0, clock=time.monotonic)
    s.put(frame("a", 0))
    thread, result = start(lambda: s.next_batch(timeout=5.0))
    s.remove_camera("a")
    s.close()
    assert result["done"].wait(2.0) and result["value"] is None


def test_bad_input_gives_clear_errors() -> None:
    s = make(cameras=("a",))
    with pytest.raises(KeyError, match="unknown camera 'zz'"):
        s.put(frame("zz", 0))
    with pytest.raises(ValueError, match="already added"):
        s.add_camera("a", DROP)
    with pytest.raises(KeyError, match="unknown camera"):
        s.remove_camera("zz")
    with pytest.raises(ValueError, match="max_batch"):
        BatchScheduler(0, 0.1, 4)
    with pytest.raises(ValueError, match="queue_per_camera"):
        BatchScheduler(4, 0.1, 0)
    with pytest.raises(ValueError, match="max_wait_s"):
        BatchScheduler(4, -1.0, 4)


def test_metrics_record_batch_size_and_wait() -> None:
    metrics = Metrics()
    clock = FakeClock(0.0)
    s = make(max_batch=4, max_wait_s=0.5, cameras=("a", "b"), clock=clock, metrics=metrics)
    s.put(frame("a", 0))
    s.put(frame("b", 0))
    assert metrics.value("pipeline_queue_depth", camera="b") == 1
    clock.t = 0.5
    assert len(s.poll(0.5)) == 2
    assert metrics.value("pipeline_batch_size_count") == 1
    assert metrics.value("pipeline_batch_size_sum") == 2
    assert metrics.value("pipeline_batch_wait_seconds_sum") == pytest.approx(0.5)
    assert metrics.value("pipeline_queue_depth", camera="a") == 0


# ---- blocking consumer (real clock) ---------------------------------------------------------

def test_next_batch_returns_at_the_deadline_not_before() -> None:
    s = make(max_batch=8, max_wait_s=0.1, clock=time.monotonic)
    put_at = time.monotonic()
    s.put(frame("a", 0))
    batch = s.next_batch(timeout=5.0)
    returned_after = time.monotonic() - put_at
    assert batch is not None and ids(batch) == [("a", 0)]
    assert batch.oldest_wait_s >= 0.1
    assert 0.1 <= returned_after < 0.5


def test_next_batch_times_out_with_none() -> None:
    s = make(clock=time.monotonic)
    t0 = time.monotonic()
    assert s.next_batch(timeout=0.05) is None
    assert 0.05 <= time.monotonic() - t0 < 1.0


def test_next_batch_wakes_when_a_full_batch_arrives() -> None:
    s = make(max_batch=2, max_wait_s=30.0, clock=time.monotonic)
    thread, result = start(lambda: s.next_batch(timeout=10.0))
    assert not result["done"].wait(0.05)
    t0 = time.monotonic()
    s.put(frame("a", 0))
    s.put(frame("a", 1))
    assert result["done"].wait(2.0)
    assert time.monotonic() - t0 < 0.5
    assert ids(result["value"]) == [("a", 0), ("a", 1)]


def test_next_batch_waiting_on_empty_queue_picks_up_a_new_frames_deadline() -> None:
    s = make(max_batch=8, max_wait_s=0.1, clock=time.monotonic)
    thread, result = start(lambda: s.next_batch(timeout=10.0))
    assert not result["done"].wait(0.05)
    put_at = time.monotonic()
    s.put(frame("a", 0))
    assert result["done"].wait(5.0)
    elapsed = time.monotonic() - put_at
    assert 0.1 <= elapsed < 0.5
    assert ids(result["value"]) == [("a", 0)]


def test_many_producers_one_consumer_lose_nothing_with_wait_policy() -> None:
    cams = [f"c{i}" for i in range(6)]
    s = make(max_batch=4, max_wait_s=0.005, queue_per_camera=2, cameras=cams, policy=WAIT,
             clock=time.monotonic)
    per_camera = 50

    def produce(c: str) -> None:
        for i in range(per_camera):
            assert s.put(frame(c, i), timeout=10.0)

    producers = [threading.Thread(target=produce, args=(c,), daemon=True) for c in cams]
    for p in producers:
        p.start()
    got: dict[str, list[int]] = {c: [] for c in cams}
    deadline = time.monotonic() + 15.0
    while sum(map(len, got.values())) < per_camera * len(cams) and time.monotonic() < deadline:
        batch = s.next_batch(timeout=1.0)
        if batch is not None:
            assert len(batch) <= 4
            for f in batch.frames:
                got[f.camera_id].append(f.index)
    for p in producers:
        p.join(5.0)
    assert got == {c: list(range(per_camera)) for c in cams}


# ---- property: conservation, FIFO, bounds, fairness -----------------------------------------

CAMS = ("a", "b", "c")
op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(CAMS)),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.01, 0.03, 0.1])),
    st.tuples(st.just("poll"), st.none()),
    st.tuples(st.just("remove"), st.sampled_from(CAMS)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(op, max_size=80),
    max_batch=st.integers(1, 5),
    queue_per_camera=st.integers(1, 4),
    policies=st.lists(st.sampled_from([DROP, WAIT]), min_size=len(CAMS), max_size=len(CAMS)),
)
def test_every_frame_batched_or_dropped_exactly_once(ops, max_batch, queue_per_camera, policies) -> None:
    max_wait = 0.05
    clock = FakeClock(0.0)
    s = BatchScheduler(max_batch, max_wait, queue_per_camera, clock=clock)
    policy = dict(zip(CAMS, policies))
    # The model: per camera the frames (and enqueue times) that should still be queued.
    model: dict[str, deque[tuple[float, Frame]]] = {}
    dropped: dict[str, int] = {c: 0 for c in CAMS}
    accepted: list[Frame] = []
    batched: list[Frame] = []
    counted_out: list[Frame] = []  # returned by remove_camera
    index = 0

    def add(c: str) -> None:
        s.add_camera(c, policy[c])
        model[c] = deque()

    for c in CAMS:
        add(c)

    def check_poll() -> None:
        queued = {c: len(q) for c, q in model.items() if q}
        total = sum(queued.values())
        oldest = min((q[0][0] for q in model.values() if q), default=None)
        batch = s.poll(clock.t)
        due = total > 0 and (total >= max_batch or clock.t >= oldest + max_wait or closed)
        assert (batch is not None) == due
        if batch is None:
            return
        assert 1 <= len(batch) <= max_batch
        assert len(batch) == min(max_batch, total)
        for f in batch.frames:
            head_t, head = model[f.camera_id].popleft()  # FIFO within a camera
            assert head is f
            batched.append(f)
        in_batch = {f.camera_id for f in batch.frames}
        if set(queued) - in_batch:  # someone waited: the batch must be one frame per distinct camera
            assert len(batch) == max_batch == len(in_batch)

    closed = False
    for kind, arg in ops:
        if kind == "put":
            if arg not in model:
                add(arg)
            index += 1
            f = frame(arg, index)
            q = model[arg]
            full = len(q) >= queue_per_camera
            ok = s.put(f, timeout=0)
            if full and policy[arg] is WAIT:
                assert ok is False
                continue
            assert ok is True
            if full:
                q.popleft()
                dropped[arg] += 1
            q.append((clock.t, f))
            accepted.append(f)
        elif kind == "tick":
            clock.t += arg
        elif kind == "poll":
            check_poll()
        elif kind == "remove" and arg in model:
            leftovers = s.remove_camera(arg)
            assert leftovers == [f for _, f in model.pop(arg)]
            counted_out.extend(leftovers)
        for c, q in model.items():
            assert s.depth(c) == len(q)
    s.close()
    closed = True
    while not s.closed_and_empty:
        check_poll()
    assert s.poll(clock.t) is None

    for c in CAMS:
        assert s.dropped(c) == dropped[c]
    out_ids = [id(f) for f in batched + counted_out]
    assert len(out_ids) == len(set(out_ids))  # nothing comes out twice
    assert len(accepted) == len(batched) + len(counted_out) + sum(dropped.values())
    assert set(out_ids) <= {id(f) for f in accepted}
    for c in CAMS:  # order within a camera preserved
        idx = [f.index for f in batched if f.camera_id == c]
        assert idx == sorted(idx)
