"""What the supervisor loop tells systemd: READY / RELOADING / STOPPING, a STATUS line with
the cameras' states, and WATCHDOG=1 pings only while the pipeline really moves frames.

"Moving" (FlowWatch): every decoded frame is either published, counted as dropped, or still
on its way. The pipeline is moving while frames are being published, or while nothing is on
its way (every camera idle or reconnecting: nothing to move, nothing hung). Frames on their
way with no publish for `stall_after_s` means a stage is stuck: the pings stop and systemd
restarts the service after WatchdogSec.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Callable

from pipeline.app.camera_status import CameraStatusBoard
from pipeline.observe.metrics import Metrics
from pipeline.app.systemd_notify import SystemdNotifier

STATUS_EVERY_S = 1.0  # how often the STATUS line is recomputed (sent only when it changed)


class FlowWatch:
    """Decides from counter samples whether frames move. Pure: the caller passes the time."""

    def __init__(self, stall_after_s: float, now: float) -> None:
        self.stall_after_s = stall_after_s
        self._published = -1.0
        self._last_progress = now

    def observe(self, decoded: float, published: float, dropped: float, now: float) -> None:
        on_their_way = decoded - published - dropped
        if published != self._published or on_their_way <= 0:
            self._last_progress = now
        self._published = published

    def moving(self, now: float) -> bool:
        return now - self._last_progress <= self.stall_after_s


def camera_summary(board: CameraStatusBoard) -> str:
    """`3 camera(s): 2 up, 1 reconnecting [gate]; published 1234` (cameras not up are named)."""
    snaps = board.snapshot()
    counts = Counter(s.state.value for s in snaps)
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    not_up = [s.camera_id for s in snaps if s.state.value != "up"]
    named = f" [{', '.join(not_up[:8])}{', ...' if len(not_up) > 8 else ''}]" if not_up else ""
    published = sum(s.published for s in snaps)
    return f"{len(snaps)} camera(s): {states or 'none reporting yet'}{named}; published {published}"


class ServiceReporter:
    def __init__(self, notifier: SystemdNotifier, metrics: Metrics, board: CameraStatusBoard,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._notifier = notifier
        self._metrics = metrics
        self._board = board
        self._clock = clock
        now = clock()
        watchdog_s = notifier.watchdog_s
        # Ping twice per half period; stop once nothing was published for half the period.
        self._ping_every_s = watchdog_s / 4 if watchdog_s else None
        self.flow = FlowWatch(watchdog_s / 2 if watchdog_s else float("inf"), now)
        # the counters are read at least as often as the pings go out
        self._observe_every_s = min(STATUS_EVERY_S, self._ping_every_s or STATUS_EVERY_S)
        self._next_observe = now
        self._next_ping = now
        self._next_status = now
        self._last_status = ""

    def ready(self) -> None:
        self._last_status = camera_summary(self._board)
        self._notifier.ready(self._last_status)

    def reloading(self) -> None:
        self._notifier.reloading()

    def stopping(self) -> None:
        self._notifier.stopping()

    def tick(self) -> None:
        """Called by the supervisor loop (often); does work at most once per interval."""
        if not self._notifier.enabled:
            return
        now = self._clock()
        if now >= self._next_observe:
            self._next_observe = now + self._observe_every_s
            totals = self._metrics.flow_totals()
            self.flow.observe(totals.decoded, totals.published, totals.dropped, now)
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY_S
            status = camera_summary(self._board)
            if status != self._last_status:
                self._last_status = status
                self._notifier.status(status)
        if self._ping_every_s and now >= self._next_ping and self.flow.moving(now):
            self._next_ping = now + self._ping_every_s
            self._notifier.watchdog()
