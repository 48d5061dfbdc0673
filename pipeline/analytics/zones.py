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
from dataclasses import dataclass, field

import numpy as np

from pipeline.frame import AnalyticsEvent
from pipeline.analytics.geometry import crosses_segment


@dataclass(frozen=True)
class Zone:
    name: str
    polygon: np.ndarray  # [V,2] fractions of the frame
    labels: frozenset[str] | None  # None: every class
    loiter_s: float | None = None
    _edges: tuple[np.ndarray, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # per edge: y1, y2, x1 and dx/dy (0 for horizontal edges, which never straddle a point)
        p = np.asarray(self.polygon, np.float64)
        q = np.roll(p, -1, axis=0)
        dy = q[:, 1] - p[:, 1]
        slope = np.divide(q[:, 0] - p[:, 0], dy, out=np.zeros(len(p)), where=dy != 0)
        object.__setattr__(self, "_edges", (p[None, :, 1], q[None, :, 1], p[None, :, 0], slope[None, :]))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Same rule as geometry.points_in_polygon, with the edges prepared once (the hot path)."""
        y1, y2, x1, slope = self._edges
        py = points[:, 1:2]
        crossing = ((y1 > py) != (y2 > py)) & (points[:, 0:1] < x1 + (py - y1) * slope)
        return (np.count_nonzero(crossing, axis=1) & 1).astype(bool)


@dataclass(frozen=True)
class Line:
    name: str
    start: np.ndarray  # [2] fractions of the frame
    end: np.ndarray
    labels: frozenset[str] | None
    _normal: np.ndarray = field(init=False, repr=False, compare=False)
    _offset: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        d = np.asarray(self.end, np.float64) - np.asarray(self.start, np.float64)
        normal = np.array([-d[1], d[0]])  # side = sign(normal . (p - start)), as geometry.side_of_line
        object.__setattr__(self, "_normal", normal)
        object.__setattr__(self, "_offset", float(normal @ np.asarray(self.start, np.float64)))

    def sides(self, points: np.ndarray) -> list[int]:
        return np.sign(points @ self._normal - self._offset).astype(np.int64).tolist()


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
        self._last: dict[int, tuple[str, int, np.ndarray, float]] = {}
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
            pts = np.empty((len(boxes), 2))
            pts[:, 0] = (boxes[:, 0] + boxes[:, 2]) * (0.5 / max(width, 1))  # bottom-centre (geometry.anchors)
            pts[:, 1] = boxes[:, 3] * (1.0 / max(height, 1))
            last = self._last
            for tid, label, cid, row in zip(track_ids, labels, class_ids, boxes):
                last[tid] = (label, cid, row, t)
            for zone in self.zones:
                self._zone_events(zone, t, track_ids, labels, zone.contains(pts), events)
            for line in self.lines:
                self._line_events(line, track_ids, labels, pts, events)
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

    def _zone_events(self, zone: Zone, t: float, track_ids: list[int], labels: list[str], inside: np.ndarray,
                     events: list[AnalyticsEvent]) -> None:
        visits = self._visits[zone.name]
        if not visits and not inside.any():
            return
        for i, tid in enumerate(track_ids):
            visit = visits.get(tid)
            if inside[i]:
                if visit is None:
                    if zone.labels is None or labels[i] in zone.labels:
                        visits[tid] = _Visit(t)
                        events.append(self._event("zone_enter", tid, zone=zone.name))
                elif zone.loiter_s is not None and not visit.loitered and t - visit.entered_at >= zone.loiter_s:
                    visit.loitered = True
                    events.append(self._event("loitering", tid, zone=zone.name, dwell=t - visit.entered_at))
            elif visit is not None:
                del visits[tid]
                events.append(self._event("zone_exit", tid, zone=zone.name, dwell=t - visit.entered_at))

    def _line_events(self, line: Line, track_ids: list[int], labels: list[str], pts: np.ndarray,
                     events: list[AnalyticsEvent]) -> None:
        memory = self._sides[line.name]
        sides = line.sides(pts)
        for i, tid in enumerate(track_ids):
            side = sides[i]
            if side == 0 or (line.labels is not None and labels[i] not in line.labels):
                continue
            before = memory.get(tid)
            memory[tid] = (side, pts[i])
            if before is None or before[0] == side:
                continue
            if crosses_segment(before[1][None], pts[i][None], line.start, line.end)[0]:
                events.append(self._event("line_cross", tid, line=line.name,
                                          direction="forward" if side > 0 else "backward"))

    def _event(self, kind: str, tid: int, zone: str | None = None, line: str | None = None,
               direction: str | None = None, dwell: float | None = None) -> AnalyticsEvent:
        label, cid, box, _ = self._last[tid]
        what = direction if kind == "line_cross" else kind.removeprefix("zone_")
        self.counts[(zone or line or "", label, what)] += 1
        return AnalyticsEvent(kind, tid, label, cid, zone, line, direction,  # type: ignore[arg-type]
                              None if dwell is None else max(0.0, dwell), tuple(float(v) for v in box))
