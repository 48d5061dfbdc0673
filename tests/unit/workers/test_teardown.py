"""pipeline/workers/teardown.py: stopped cameras' slow teardowns run later, one at a time, and none
after close() (the worker's exit)."""
from __future__ import annotations

import threading
import time

import pytest

from pipeline.workers.teardown import DeferredTeardown


def finished(teardowns: DeferredTeardown, count: int, timeout: float = 3.0) -> bool:
    """True once `count` teardowns have run (the counter is bumped after each)."""
    end = time.monotonic() + timeout
    while teardowns.done < count and time.monotonic() < end:
        time.sleep(0.01)
    return teardowns.done >= count


def test_a_teardown_runs_after_the_grace_and_not_before() -> None:
    ran: list[float] = []
    teardowns = DeferredTeardown(grace_s=0.3)
    added = time.monotonic()
    teardowns.add(lambda: ran.append(time.monotonic()))
    time.sleep(0.1)
    assert ran == [] and teardowns.pending == 1
    assert finished(teardowns, 1)
    assert ran[0] - added >= 0.3 and teardowns.pending == 0
    teardowns.close()


def test_teardowns_run_in_the_order_they_came_and_one_at_a_time() -> None:
    order: list[int] = []
    running = threading.Semaphore(1)

    def teardown(n: int) -> None:
        assert running.acquire(blocking=False), "two teardowns at once"
        order.append(n)
        time.sleep(0.02)
        running.release()

    teardowns = DeferredTeardown(grace_s=0.05)
    for n in range(5):
        teardowns.add(lambda n=n: teardown(n))
    assert finished(teardowns, 5)
    assert order == [0, 1, 2, 3, 4]
    teardowns.close()


def test_close_skips_what_is_not_due_and_later_adds() -> None:
    ran: list[int] = []
    teardowns = DeferredTeardown(grace_s=0.2)
    teardowns.add(lambda: ran.append(1))
    teardowns.add(lambda: ran.append(2))
    assert teardowns.close() == 2
    teardowns.add(lambda: ran.append(3))
    time.sleep(0.4)
    assert ran == [] and teardowns.pending == 0 and teardowns.done == 0


def test_a_failing_teardown_is_logged_and_the_next_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[int] = []
    teardowns = DeferredTeardown(grace_s=0.01)

    def broken() -> None:
        raise RuntimeError("CUDA_ERROR_DEINITIALIZED")

    teardowns.add(broken)
    teardowns.add(lambda: ran.append(1))
    assert finished(teardowns, 2)
    assert ran == [1]
    assert "teardown failed" in caplog.text and "CUDA_ERROR_DEINITIALIZED" in caplog.text
    teardowns.close()


def test_skipped_teardowns_keep_what_they_hold_until_the_process_exits() -> None:
    """Dropping a skipped teardown would destroy its decoder right where it was dropped (the GIL held
    0.1-1 s per NVDEC decoder): at the worker's exit they must stay referenced, os._exit frees them."""
    import gc
    import weakref

    class Decoder:
        pass

    teardowns = DeferredTeardown(grace_s=5.0)
    held = [Decoder(), Decoder()]
    alive = [weakref.ref(d) for d in held]
    teardowns.add(lambda d=held[0]: None)  # before the exit: pending
    teardowns.close()
    teardowns.add(lambda d=held[1]: None)  # a camera that stopped after it
    held.clear()
    gc.collect()
    assert all(ref() is not None for ref in alive)
