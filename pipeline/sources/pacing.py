"""Real-time pacing for files and synthetic sources: release each frame at its presentation time."""
from __future__ import annotations

import threading
import time
from typing import Callable

# A pts step backwards (or none), or forwards by more than this, is a discontinuity (loop restart,
# concatenated segments), not a reason to wait: the timeline continues one period later.
MAX_PTS_GAP_S = 10.0
# Further behind schedule than this (a stalled box, a slow decoder) and we stop trying to catch
# up with a burst of frames; a live camera would not have sent them either.
MAX_LAG_S = 1.0


class FramePacer:
    """Sleeps against one monotonic schedule anchored at the first frame, so errors never
    accumulate (no drift): frame with pts p is due at anchor_time + (p - anchor_pts)."""

    def __init__(self, stop: threading.Event, fps: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stop = stop
        self._period = 1.0 / fps if fps > 0 else 0.04
        self._clock = clock
        self._anchor_time: float | None = None
        self._anchor_pts = 0.0
        self._last_due: float | None = None
        self._last_pts: float | None = None

    def wait(self, pts: float | None) -> bool:
        """Block until the frame with this pts is due. False if `stop` was set meanwhile."""
        delay = self.delay_for(pts)
        if delay > 0:
            return not self._stop.wait(delay)
        return not self._stop.is_set()

    def delay_for(self, pts: float | None) -> float:
        """Schedule the next frame (pts in seconds, None if unknown); seconds until it is due."""
        now = self._clock()
        if pts is None:
            due = now if self._last_due is None else self._last_due + self._period
        else:
            if self._needs_anchor(pts):
                self._anchor_time = now if self._last_due is None else self._last_due + self._period
                self._anchor_pts = pts
            assert self._anchor_time is not None
            due = self._anchor_time + (pts - self._anchor_pts)
        if due < now - MAX_LAG_S:
            due = now
            if pts is not None:
                self._anchor_time, self._anchor_pts = now, pts
        self._last_due, self._last_pts = due, pts
        return due - now

    def _needs_anchor(self, pts: float) -> bool:
        if self._anchor_time is None or self._last_pts is None:
            return True
        step = pts - self._last_pts
        # step 0: the same pts again, e.g. a one-frame file looping; without a new anchor every
        # repeat would be due at once (a still image decoded ~800 times a second)
        return step <= 0 or step > MAX_PTS_GAP_S
