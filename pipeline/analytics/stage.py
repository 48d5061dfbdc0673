"""The analytics stage: FrameDetections -> (FrameDetections with track ids, FrameEvents | None).

One ByteTracker and one ZoneLineCounter per camera, created on the camera's first frame. A
camera's frames must come in order from one thread (the daemon calls this from its postprocess
thread, which receives batches in order). Rules change live (`set_rules`, config reload); a
restarted camera (`reset_camera`) loses its tracks but keeps its id counter, so ids are never
reused in a run. Those two may be called from another thread (the daemon's reload): they only
leave a request that the camera's next frame applies, so a frame never sees half a change.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING

import numpy as np

from pipeline.frame import FrameEvents
from pipeline.analytics.tracker import ByteTracker, TrackerSettings
from pipeline.analytics.zones import Line, Zone, ZoneLineCounter
from pipeline.frame import Detection, FrameDetections

if TYPE_CHECKING:
    from pipeline.config import AnalyticsConfig, CameraAnalyticsConfig, CameraConfig
    from pipeline.observe.metrics import Metrics


def tracker_settings(cfg: "AnalyticsConfig") -> TrackerSettings:
    return TrackerSettings(cfg.high_score, cfg.low_score, cfg.new_track_score, cfg.match_iou,
                           cfg.low_match_iou, cfg.lost_frames, cfg.max_tracks, cfg.class_agnostic)


def camera_rules(cfg: "CameraAnalyticsConfig") -> tuple[tuple[Zone, ...], tuple[Line, ...]]:
    """Config (pixels of frame_size, or fractions) -> rules in fractions of the frame."""
    zones = tuple(Zone(z.name, cfg.fractions(z.points), None if z.classes is None else frozenset(z.classes),
                       z.loiter_s) for z in cfg.zones)
    lines = []
    for ln in cfg.lines:
        start, end = cfg.fractions([ln.start, ln.end])
        lines.append(Line(ln.name, start, end, None if ln.classes is None else frozenset(ln.classes)))
    return zones, tuple(lines)


@dataclasses.dataclass(frozen=True)
class RuleCount:
    """One running count: `rule` (a zone or line name), the object's label, and what it did (enter,
    exit, forward, backward, loiter...)."""
    rule: str
    label: str
    what: str
    count: int


@dataclasses.dataclass(frozen=True)
class CameraAnalytics:
    """A camera's analytics at one moment: live tracks and its running counts, sorted by rule."""
    tracks: int
    counts: tuple[RuleCount, ...]


@dataclasses.dataclass
class _CameraState:
    tracker: ByteTracker
    counter: ZoneLineCounter


class Analytics:
    def __init__(self, config: "AnalyticsConfig", cameras: "list[CameraConfig]",
                 metrics: "Metrics | None" = None) -> None:
        self._settings = tracker_settings(config)
        self._rules = {c.id: camera_rules(c.analytics) for c in cameras}
        self._cameras: dict[str, _CameraState] = {}
        self._metrics = metrics
        self._lock = threading.Lock()
        self._new_rules: dict[str, tuple[tuple[Zone, ...], tuple[Line, ...]]] = {}  # applied at the next frame
        self._resets: set[str] = set()

    def set_rules(self, camera: "CameraConfig") -> None:
        """Zones/lines of this camera from its next frame on; its tracks and counts of kept names stay."""
        rules = camera_rules(camera.analytics)
        with self._lock:
            self._new_rules[camera.id] = rules

    def reset_camera(self, camera_id: str) -> None:
        """The camera restarted (new source) or was removed: at its next frame its tracks end (no
        events); its ids and running counts continue. (A removed camera keeps its last tracks, at most
        max_tracks, until it comes back: freeing them here would race with its last frames.)"""
        with self._lock:
            self._resets.add(camera_id)

    def _apply_requests(self, camera_id: str, state: _CameraState) -> None:
        with self._lock:
            rules = self._new_rules.pop(camera_id, None)
            reset = camera_id in self._resets
            self._resets.discard(camera_id)
        if rules is not None:
            self._rules[camera_id] = rules
            state.counter.set_rules(*rules)
        if reset:  # tracks and zone visits end quietly; the running counts go on
            state.tracker = state.tracker.fresh()
            counts = state.counter.counts
            state.counter = ZoneLineCounter(*self._rules.get(camera_id, ((), ())))
            state.counter.counts = counts

    def tracks(self, camera_id: str) -> int:
        state = self._cameras.get(camera_id)
        return len(state.tracker) if state else 0

    def counts(self, camera_id: str) -> dict[tuple[str, str, str], int]:
        """Running counts; safe from another thread (a copy taken while the analytics thread adds
        to it is retried)."""
        state = self._cameras.get(camera_id)
        for _ in range(10):
            try:
                return dict(state.counter.counts) if state else {}
            except RuntimeError:  # changed size during the copy
                continue
        return {}

    def snapshot(self, camera_id: str) -> CameraAnalytics | None:
        """Live tracks and running counts (for the status lines and the preview's /api/cameras); None
        before the camera's first frame. Safe from another thread."""
        state = self._cameras.get(camera_id)
        if state is None:
            return None
        counts = tuple(RuleCount(rule, label, what, n) for (rule, label, what), n in sorted(self.counts(camera_id).items()))
        return CameraAnalytics(len(state.tracker), counts)

    def status_line(self, camera_id: str) -> str | None:
        """`tracks 4; door: person enter 3 exit 2; kerb: car forward 1` for the status lines, or None."""
        snap = self.snapshot(camera_id)
        if snap is None:
            return None
        per_rule: dict[str, list[str]] = {}
        for c in snap.counts:
            per_rule.setdefault(c.rule, []).append(f"{c.label} {c.what} {c.count}")
        rules = "; ".join(f"{rule}: {', '.join(parts)}" for rule, parts in per_rule.items())
        return f"tracks {snap.tracks}" + (f"; {rules}" if rules else "")

    def __call__(self, fd: FrameDetections) -> tuple[FrameDetections, FrameEvents | None]:
        state = self._cameras.get(fd.camera_id)
        if state is None:
            state = _CameraState(ByteTracker(self._settings),
                                 ZoneLineCounter(*self._rules.get(fd.camera_id, ((), ()))))
            self._cameras[fd.camera_id] = state
        if self._new_rules or self._resets:  # unlocked peek: a request seen one frame late is fine
            self._apply_requests(fd.camera_id, state)
        dets = fd.detections
        boxes = np.array([d.box for d in dets], np.float64).reshape(-1, 4)
        update = state.tracker.update(boxes, np.fromiter((d.score for d in dets), np.float64, len(dets)),
                                      np.fromiter((d.class_id for d in dets), np.int64, len(dets)))
        ids = update.track_ids.tolist()
        tracked = FrameDetections(fd.camera_id, fd.index, fd.pts, fd.captured_at, fd.width, fd.height,
                                  tuple(Detection(d.label, d.class_id, d.score, d.box, tid or None)
                                        for d, tid in zip(dets, ids)))
        counter = state.counter
        if not counter.active:
            return tracked, None
        keep = [i for i, tid in enumerate(ids) if tid]
        events = counter.update(fd.pts if fd.pts is not None else fd.captured_at, fd.width, fd.height,
                                [ids[i] for i in keep], [dets[i].label for i in keep],
                                [dets[i].class_id for i in keep], boxes[keep], update.ended)
        if not events:
            return tracked, None
        if self._metrics is not None:
            for ev in events:
                self._metrics.analytics_events.labels(fd.camera_id, ev.zone or ev.line or "", ev.label,
                                                      ev.direction or ev.kind.removeprefix("zone_")).inc()
        return tracked, FrameEvents(fd.camera_id, fd.index, fd.pts, fd.captured_at, tuple(events),
                                    tuple(sorted(counter.counts.items())))
