"""Slow teardowns of a decode worker's stopped cameras, run later on a thread of their own.

Destroying an NVDEC decoder holds the interpreter lock for 0.1-1 s. Done on the camera's thread as
it stopped, a worker with 34 cameras spent seconds on it at shutdown, its camera threads were still
running when the daemon's exit budget ran out, and the daemon killed it (issue 22, H200). Here a
stopped camera hands its teardown over and reports `stopped` at once; the teardown runs `grace_s`
later, one at a time, so a camera removed by a reload still frees its GPU memory, while at shutdown
(within the daemon's 5 s stop budget, well under `grace_s`) none has started: the worker leaves with
os._exit and the driver frees what is left.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)

GRACE_S = 10.0  # longer than the daemon's stop budget (app/daemon.py STOP_BUDGET_S)


class DeferredTeardown:
    def __init__(self, grace_s: float = GRACE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._grace_s = grace_s
        self._clock = clock
        # (due, teardown) in the order added: one grace for all, so the first is always due first
        self._due: deque[tuple[float, Callable[[], None]]] = deque()
        self._changed = threading.Condition()
        self._closed = False
        # Teardowns not run because the worker is exiting. Kept, not dropped: dropping one would free
        # what it holds (a decoder) right there, in whichever thread dropped it, which is the very
        # wait this class exists to avoid. os._exit frees them.
        self._kept: list[Callable[[], None]] = []
        self.done = 0  # teardowns run (tests and logs)
        self._thread = threading.Thread(target=self._run, name="teardown", daemon=True)
        self._thread.start()

    def add(self, teardown: Callable[[], None]) -> None:
        """Run `teardown` grace_s from now (never, if close() comes first)."""
        with self._changed:
            if self._closed:
                self._kept.append(teardown)
                return
            self._due.append((self._clock() + self._grace_s, teardown))
            self._changed.notify()

    @property
    def pending(self) -> int:
        with self._changed:
            return len(self._due)

    def close(self) -> int:
        """Start no more teardowns (one under way finishes); the number skipped. The skipped ones, and
        any added later, are kept unrun until the process exits."""
        with self._changed:
            self._closed = True
            skipped = len(self._due)
            self._kept.extend(teardown for _, teardown in self._due)
            self._due.clear()
            self._changed.notify()
        return skipped

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closed and (not self._due or self._due[0][0] > self._clock()):
                    self._changed.wait(None if not self._due else max(0.0, self._due[0][0] - self._clock()))
                if self._closed:
                    return
                _, teardown = self._due.popleft()
            try:
                teardown()
            except Exception:  # noqa: BLE001 - one camera's teardown must not stop the others'
                log.exception("a stopped camera's teardown failed")
            self.done += 1
