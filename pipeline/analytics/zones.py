"""Zones (polygons) and directed lines of one camera, and the events tracks cause in them.

Positions are the track box's bottom-centre (geometry.anchors), as fractions of the frame
(0..1), so rules hold whatever the decoded size. The same class runs on ground-truth tracks to
derive the true events (pipeline/tools/evaluate/), so truth and daemon use one rule.

- zone_enter: a track's anchor is inside the zone and was not (or the track is new there);
- zone_exit: it was inside and is now outside, or the track ended inside (dwell_s: stream
  seconds since its zone_enter);
- loitering: once per visit, when the dwell reaches the zone's loiter_s;
- line_cross: the anchor moved from one side of the line to the other through the segment
  itself; direction "forward" is from the left of start->end to its right (image coordinates,
  y down: for a line drawn left to right, forward is downwards), "backward" the other way.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from pipeline.analytics.events import AnalyticsEvent
from pipeline.analytics.geometry import anchors, crosses_segment, points_in_polygon, side_of_line


@dataclass(frozen=True)
class Zone:
    name: str
    polygon: np.ndarray  # [V,2] fractions of the frame
    labels: frozenset[str] | None  # None: every class
    loiter_s: float | None = None


@dataclass(frozen=True)
class Line:
    name: str
    start: np.ndarray  # [2] fractions of the frame
    end: np.ndarray
    labels: frozenset[str] | None


@dataclass
class _Visit:
    entered_at: float
    loitered: bool = False


class ZoneLineCounter:
    """Per-track zone and line state of one camera; bounded by the tracks alive (`end()` frees)."""

    def __init__(self, zones: tuple[Zone, ...] = (), lines: tuple[Line, ...] = ()) -> None:
        self.zones: tuple[Zone, ...] = ()
        self.lines: tuple[Line, ...] = ()
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self._visits: dict[str, dict[int, _Visit]] = {}
        self._sides: dict[str, dict[int, tuple[int, np.ndarray]]] = {}  # last non-zero side and where
        # label, class id, last box, when last seen
        self._last: dict[int, tuple[str, int, tuple[float, float, float, float], float]] = {}
        self.set_rules(zones, lines)

    def set_rules(self, zones: tuple[Zone, ...], lines: tuple[Line, ...]) -> None:
        """New zones/lines (config reload): state and counts of rules that keep their name stay."""
        self.zones, self.lines = tuple(zones), tuple(lines)
        self._visits = {z.name: self._visits.get(z.name, {}) for z in self.zones}
        self._sides = {ln.name: self._sides.get(ln.name, {}) for ln in self.lines}
        names = {z.name for z in self.zones} | {ln.name for ln in self.lines}
        self.counts = Counter({k: v for k, v in self.counts.items() if k[0] in names})

    @property
    def active(self) -> bool:
        return bool(self.zones or self.lines)

    def tracked(self) -> int:
        return len(self._last)

    def update(self, t: float, width: int, height: int, track_ids: list[int], labels: list[str],
               class_ids: list[int], boxes: np.ndarray, ended: tuple[int, ...] = ()) -> list[AnalyticsEvent]:
        """One frame's tracked detections (stream time t seconds) -> its events."""
        events: list[AnalyticsEvent] = []
        if track_ids:
            boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
            pts = anchors(boxes) / np.array([max(width, 1), max(height, 1)], np.float64)
            box_tuples = [tuple(map(float, b)) for b in boxes]
            for tid, label, cid, box in zip(track_ids, labels, class_ids, box_tuples):
                self._last[tid] = (label, cid, box, t)
            for zone in self.zones:
                inside = points_in_polygon(pts, zone.polygon)
                visits = self._visits[zone.name]
                for i, tid in enumerate(track_ids):
                    if zone.labels is not None and labels[i] not in zone.labels:
                        continue
                    visit = visits.get(tid)
                    if inside[i] and visit is None:
                        visits[tid] = _Visit(t)
                        events.append(self._event("zone_enter", tid, zone=zone.name))
                    elif not inside[i] and visit is not None:
                        del visits[tid]
                        events.append(self._event("zone_exit", tid, zone=zone.name, dwell=t - visit.entered_at))
                    elif (visit is not None and zone.loiter_s is not None and not visit.loitered
                          and t - visit.entered_at >= zone.loiter_s):
                        visit.loitered = True
                        events.append(self._event("loitering", tid, zone=zone.name, dwell=t - visit.entered_at))
            for line in self.lines:
                sides = side_of_line(pts, line.start, line.end)
                memory = self._sides[line.name]
                for i, tid in enumerate(track_ids):
                    if sides[i] == 0 or (line.labels is not None and labels[i] not in line.labels):
                        continue
                    before = memory.get(tid)
                    memory[tid] = (int(sides[i]), pts[i])
                    if before is None or before[0] == sides[i]:
                        continue
                    if crosses_segment(before[1][None], pts[i][None], line.start, line.end)[0]:
                        direction = "forward" if sides[i] > 0 else "backward"
                        events.append(self._event("line_cross", tid, line=line.name, direction=direction))
        for tid in ended:
            for zone in self.zones:
                visit = self._visits[zone.name].pop(tid, None)
                if visit is not None and tid in self._last:  # dwell up to when it was last seen
                    events.append(self._event("zone_exit", tid, zone=zone.name,
                                              dwell=self._last[tid][3] - visit.entered_at))
            for memory in self._sides.values():
                memory.pop(tid, None)
            self._last.pop(tid, None)
        return events

    def _event(self, kind: str, tid: int, zone: str | None = None, line: str | None = None,
               direction: str | None = None, dwell: float | None = None) -> AnalyticsEvent:
        label, cid, box, _ = self._last[tid]
        what = direction if kind == "line_cross" else kind.removeprefix("zone_")
        self.counts[(zone or line or "", label, what)] += 1
        return AnalyticsEvent(kind, tid, label, cid, zone, line, direction,  # type: ignore[arg-type]
                              None if dwell is None else max(0.0, dwell), box)
