"""Several threads work on items of one queue; their results leave in the order the items came.

The daemon runs `model.instances` inference threads on one queue of batches. A camera's frames are
spread over consecutive batches, and its messages must go out in frame order, so a thread that
finishes batch 7 before another finishes batch 6 waits for its turn.

    order = TurnOrder()
    ticket, item = order.take(inbox)      # the ticket says when this item's result may leave
    result = work(item)                   # concurrently with the other threads
    with order.turn(ticket):              # waits until every earlier ticket has had its turn
        outbox.put(result)

Every ticket must have its turn, also when its item failed (enter and put nothing); otherwise the
threads holding later tickets wait for ever.
"""
from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from typing import Any, Iterator


class TurnOrder:
    def __init__(self) -> None:
        self._take_lock = threading.Lock()  # a get and its ticket are one step: tickets follow queue order
        self._next_ticket = 0
        self._turn = 0
        self._turn_changed = threading.Condition()

    def take(self, inbox: "queue.Queue[Any]") -> tuple[int, Any]:
        """The next item of `inbox` (blocking) and its ticket."""
        with self._take_lock:
            item = inbox.get()
            ticket = self._next_ticket
            self._next_ticket += 1
        return ticket, item

    @contextmanager
    def turn(self, ticket: int) -> Iterator[None]:
        """Wait until every ticket before `ticket` has had its turn; the next one's turn starts when
        this block is left (also by an exception)."""
        with self._turn_changed:
            self._turn_changed.wait_for(lambda: self._turn == ticket)
        try:
            yield
        finally:
            with self._turn_changed:
                self._turn = ticket + 1
                self._turn_changed.notify_all()
