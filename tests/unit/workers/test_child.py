"""The worker's Outbox: messages queued close together leave in one send."""
from __future__ import annotations

import multiprocessing
import time

import pytest

import pipeline.workers.child as child


@pytest.mark.parametrize("gather_s, sends", [(0.3, [["a", "b"]]), (0.0, [["a"], ["b"]])])
def test_a_send_waits_for_the_messages_that_follow_its_first(monkeypatch: pytest.MonkeyPatch, gather_s: float,
                                                             sends: list[list[str]]) -> None:
    monkeypatch.setattr(child, "OUTBOX_GATHER_S", gather_s)
    here, there = multiprocessing.get_context("spawn").Pipe(duplex=True)
    outbox = child.Outbox(there, lambda: [], tick_s=60.0)
    outbox.put("a")
    time.sleep(0.1)  # well inside the gathering time, well past a send without it
    outbox.put("b")
    got = [here.recv() for _ in sends]
    outbox.close(2.0)
    assert got == sends
