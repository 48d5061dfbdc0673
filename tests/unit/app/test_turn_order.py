"""TurnOrder: results leave in the order their items were taken, whatever order the work ends in."""
from __future__ import annotations

import queue
import random
import threading
import time

import pytest

from pipeline.app.turn_order import TurnOrder


def run_workers(items: list[int], workers: int, work, order: TurnOrder) -> list[int]:
    inbox: queue.Queue = queue.Queue()
    for item in items:
        inbox.put(item)
    for _ in range(workers):
        inbox.put(None)
    out: list[int] = []

    def worker() -> None:
        while True:
            ticket, item = order.take(inbox)
            if item is None:
                return
            result = None
            try:
                result = work(item)
            finally:
                with order.turn(ticket):
                    if result is not None:
                        out.append(result)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a worker is stuck waiting for its turn"
    return out


def test_results_leave_in_queue_order_although_work_ends_out_of_order() -> None:
    rng = random.Random(7)
    delays = {i: rng.choice([0.0, 0.002, 0.01]) for i in range(60)}
    finished: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> int:
        time.sleep(delays[item])
        with lock:
            finished.append(item)
        return item

    out = run_workers(list(range(60)), 3, work, TurnOrder())
    assert out == list(range(60))
    assert finished != sorted(finished)  # the work itself did end out of order: the test means something


def test_a_failed_item_still_takes_its_turn() -> None:
    def work(item: int) -> int | None:
        if item == 3:
            raise RuntimeError("boom")  # escapes the worker after its turn
        return None if item == 5 else item  # 5: dropped, nothing to pass on

    inbox: queue.Queue = queue.Queue()
    order = TurnOrder()
    for i in range(8):
        inbox.put(i)
    out: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        while not inbox.empty():
            ticket, item = order.take(inbox)
            result = None
            try:
                result = work(item)
            except RuntimeError as exc:
                errors.append(exc)
            finally:
                with order.turn(ticket):
                    if result is not None:
                        out.append(result)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert out == [0, 1, 2, 4, 6, 7] and len(errors) == 1


def test_an_exception_inside_the_turn_passes_it_on() -> None:
    order = TurnOrder()
    with pytest.raises(ValueError):
        with order.turn(0):
            raise ValueError("inside")
    got = threading.Event()

    def second() -> None:
        with order.turn(1):
            got.set()

    threading.Thread(target=second, daemon=True).start()
    assert got.wait(5)
