"""What analytics hands the publisher besides the detections: events of one frame."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventKind = Literal["zone_enter", "zone_exit", "loitering", "line_cross"]


@dataclass(frozen=True)
class AnalyticsEvent:
    kind: EventKind
    track_id: int
    label: str
    class_id: int
    zone: str | None  # the zone's name (zone_enter, zone_exit, loitering)
    line: str | None  # the line's name (line_cross)
    direction: Literal["forward", "backward"] | None  # line_cross: see docs/messages.md
    dwell_s: float | None  # zone_exit, loitering: seconds since zone_enter (stream time)
    box: tuple[float, float, float, float]  # the track's last detection box, source pixels
    snapshot: str | None = None  # the preview's annotated JPEG of this event (docs/preview.md), if any


@dataclass(frozen=True, eq=False)
class FrameEvents:
    """The events one frame caused, with the camera's running counts after them."""

    camera_id: str
    index: int
    pts: float | None
    captured_at: float
    events: tuple[AnalyticsEvent, ...]
    # ((zone or line name, label, what: enter/exit/loitering/forward/backward), count) since start
    counts: tuple[tuple[tuple[str, str, str], int], ...]
