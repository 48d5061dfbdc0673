"""Tracking accuracy against ground-truth identities: MOTA, IDF1, ID switches and fragmentations
(the CLEAR MOT and ID measures as computed by `motmetrics`, the reference implementation of the
MOTChallenge devkit), plus zone/line event counts against the counts the true tracks give.

Ground truth is the detection truth with an "id" per object (scripts/assets/demo_scenes.py):
    {"frame": 0, "objects": [{"label": "person", "box": [x1, y1, x2, y2], "id": 3}]}
A prediction matches a truth box of the same label at IoU >= iou_threshold (distance 1 - IoU).
True events come from running the daemon's own ZoneLineCounter (pipeline/analytics/zones.py) on
the true tracks: the same bottom-centre anchor and rules; a true track ends the frame after it
was last in the truth.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.frame import AnalyticsEvent
from pipeline.analytics.zones import Line, Zone, ZoneLineCounter
from pipeline.tools.evaluate.detection_metrics import iou_matrix, read_truth_lines


class MotmetricsMissing(ValueError):
    """The optional motmetrics package is not installed."""


@dataclass(frozen=True)
class TruthObject:
    track: int
    label: str
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackingScore:
    camera: str
    frames: int
    objects: int  # truth boxes in the scored frames
    mota: float
    idf1: float
    id_switches: int
    fragmentations: int
    true_tracks: int
    predicted_tracks: int

    def line(self) -> str:
        return (f"{self.camera}: MOTA {self.mota:.3f}  IDF1 {self.idf1:.3f}  ID switches {self.id_switches}  "
                f"fragmentations {self.fragmentations}  (tracks: {self.predicted_tracks} predicted, "
                f"{self.true_tracks} true; {self.objects} objects in {self.frames} frames)")


def load_truth_tracks(path: str | Path) -> dict[int, list[TruthObject]]:
    return read_truth_lines(
        path, lambda o: TruthObject(int(o["id"]), o["label"], tuple(map(float, o["box"]))),
        missing_key_hint="(identities are needed for tracking; regenerate it with "
                         "scripts/assets/make_demo_assets.py)")


def score_tracking(camera: str, truth: dict[int, list[TruthObject]], messages: Iterable[dict],
                   iou_threshold: float = 0.5) -> TrackingScore:
    """Frames without a published message are not scored (as in score_camera); detections without
    a track_id count as misses-and-false-positives like any unmatched box (they carry no id)."""
    try:
        import motmetrics as mm  # pandas + scipy: ~1-4 s to import, so only `pipeline eval` pays it
    except ImportError:
        raise MotmetricsMissing("tracking metrics (MOTA, IDF1) need the motmetrics package: "
                                "pip install motmetrics (or the .[dev] extra)") from None

    by_frame = {int(m["frame"]): m["detections"] for m in messages}
    acc = mm.MOTAccumulator(auto_id=False)
    predicted: set[int] = set()
    true_ids: set[int] = set()
    objects = 0
    for frame in sorted(by_frame):
        gts = truth.get(frame, [])
        dets = [d for d in by_frame[frame] if d.get("track_id") is not None]
        g = np.array([t.box for t in gts], np.float64).reshape(-1, 4)
        p = np.array([d["box"] for d in dets], np.float64).reshape(-1, 4)
        dist = 1.0 - iou_matrix(g, p)
        same = np.array([[t.label == d["label"] for d in dets] for t in gts], bool).reshape(len(gts), len(dets))
        dist[(dist > 1.0 - iou_threshold) | ~same] = np.nan
        acc.update([t.track for t in gts], [d["track_id"] for d in dets], dist, frameid=frame)
        predicted.update(d["track_id"] for d in dets)
        true_ids.update(t.track for t in gts)
        objects += len(gts)
    summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches", "num_fragmentations"],
                                          name=camera)
    row = summary.loc[camera]
    return TrackingScore(camera, len(by_frame), objects, float(row["mota"]), float(row["idf1"]),
                         int(row["num_switches"]), int(row["num_fragmentations"]), len(true_ids), len(predicted))


def true_events(truth: dict[int, list[TruthObject]], width: int, height: int, zones: tuple[Zone, ...],
                lines: tuple[Line, ...]) -> tuple[list[tuple[int, AnalyticsEvent]], Counter[tuple[str, str, str]]]:
    """The events the true tracks cause, as (frame, event) with event.track_id the true id, and the
    counts. A true track ends (zone_exit if inside) on the first frame it is missing from; tracks
    still there at the last frame do not end (the daemon does not end them at a file's end either)."""
    counter = ZoneLineCounter(zones, lines)
    alive: set[int] = set()
    out: list[tuple[int, AnalyticsEvent]] = []
    for frame in sorted(truth):
        objs = truth[frame]
        now = {o.track for o in objs}
        events = counter.update(float(frame), width, height, [o.track for o in objs], [o.label for o in objs],
                                [0] * len(objs), np.array([o.box for o in objs], np.float64).reshape(-1, 4),
                                ended=tuple(sorted(alive - now)))
        out += [(frame, ev) for ev in events]
        alive = now
    return out, counter.counts


def true_event_counts(truth: dict[int, list[TruthObject]], width: int, height: int, zones: tuple[Zone, ...],
                      lines: tuple[Line, ...]) -> Counter[tuple[str, str, str]]:
    """(zone or line, label, enter/exit/loitering/forward/backward) -> count, from the true tracks."""
    return true_events(truth, width, height, zones, lines)[1]


def track_correspondence(truth: dict[int, list[TruthObject]], messages: Iterable[dict],
                         iou_threshold: float = 0.5) -> dict[int, int]:
    """Predicted track id -> the true id it overlaps (IoU >= threshold, same label) in most frames."""
    votes: Counter[tuple[int, int]] = Counter()
    for m in messages:
        gts = truth.get(int(m["frame"]), [])
        dets = [d for d in m["detections"] if d.get("track_id") is not None]
        if not gts or not dets:
            continue
        ious = iou_matrix(np.array([d["box"] for d in dets], np.float64), np.array([t.box for t in gts], np.float64))
        for i, d in enumerate(dets):
            j = int(np.argmax(ious[i]))
            if ious[i, j] >= iou_threshold and gts[j].label == d["label"]:
                votes[(d["track_id"], gts[j].track)] += 1
    best: dict[int, tuple[int, int]] = {}
    for (pred, true), n in votes.items():
        if pred not in best or n > best[pred][1]:
            best[pred] = (true, n)
    return {pred: true for pred, (true, _) in best.items()}


def published_event_counts(events: Iterable[dict]) -> Counter[tuple[str, str, str]]:
    """The camera's running counts from its last events message (pipeline.events/1)."""
    last = None
    for m in events:
        if last is None or m["seq"] > last["seq"]:
            last = m
    out: Counter[tuple[str, str, str]] = Counter()
    for rule, per_label in (last or {}).get("counts", {}).items():
        for label, per_what in per_label.items():
            for what, n in per_what.items():
                out[(rule, label, what)] = n
    return out


def count_lines(truth: Counter[tuple[str, str, str]], published: Counter[tuple[str, str, str]]) -> list[str]:
    """One line per (rule, label, what) in either: truth, published and the difference."""
    out = []
    for key in sorted(set(truth) | set(published)):
        t, p = truth.get(key, 0), published.get(key, 0)
        err = f"{100 * (p - t) / t:+.1f}%" if t else ("exact" if p == 0 else "n/a")
        out.append(f"{key[0]} {key[1]} {key[2]}: published {p}, truth {t} ({'exact' if p == t else err})")
    return out
