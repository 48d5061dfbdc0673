"""Detection accuracy against per-frame ground truth: precision, recall and mAP@IoU.

Ground truth is JSON Lines, one line per source frame:
    {"frame": 0, "objects": [{"label": "person", "box": [x1, y1, x2, y2]}]}
Predictions are published detections messages (dicts following pipeline.detections/2).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import numpy as np

from pipeline.analytics.geometry import iou

T = TypeVar("T")


@dataclass(frozen=True)
class TruthBox:
    label: str
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class CameraScore:
    camera: str
    frames_truth: int
    frames_scored: int  # frames that have a published message (dropped frames are not scored)
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float
    recall: float
    map50: float
    ap_per_label: dict[str, float]

    def line(self) -> str:
        aps = ", ".join(f"{k} {v:.3f}" for k, v in sorted(self.ap_per_label.items()))
        return (f"{self.camera}: precision {self.precision:.3f}  recall {self.recall:.3f}  "
                f"mAP@0.5 {self.map50:.3f}  (TP {self.true_positives}, FP {self.false_positives}, "
                f"FN {self.false_negatives}; {self.frames_scored}/{self.frames_truth} frames scored; AP {aps})")


def read_truth_lines(path: str | Path, make: Callable[[dict], T],
                     missing_key_hint: str | None = None) -> dict[int, list[T]]:
    """Ground truth JSON Lines -> {frame: [make(object) per object]} (blank lines skipped). A bad
    line is a ValueError naming path:line; with missing_key_hint, a missing key says so instead."""
    truth: dict[int, list[T]] = {}
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                truth[int(rec["frame"])] = [make(o) for o in rec["objects"]]
            except KeyError as exc:
                if missing_key_hint is None:
                    raise ValueError(f"{path}:{lineno}: bad ground-truth line: {exc}") from None
                raise ValueError(f"{path}:{lineno}: ground truth has no {exc} {missing_key_hint}") from None
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: bad ground-truth line: {exc}") from None
    return truth


def load_truth(path: str | Path) -> dict[int, list[TruthBox]]:
    return read_truth_lines(path, lambda o: TruthBox(o["label"], tuple(map(float, o["box"]))))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between [N,4] and [M,4] x1y1x2y2 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    return iou(a, b)


def _average_precision(scores: list[float], hits: list[bool], n_truth: int) -> float:
    """All-point interpolated AP (the VOC 2010+/COCO-style area under the PR curve)."""
    if n_truth == 0:
        return float("nan")
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.cumsum(np.asarray(hits)[order])
    fp = np.cumsum(~np.asarray(hits)[order])
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def score_camera(camera: str, truth: dict[int, list[TruthBox]], messages: Iterable[dict],
                 iou_threshold: float = 0.5) -> CameraScore:
    """Greedy per-frame, per-label matching by descending score (a truth box matches once)."""
    by_frame = {int(m["frame"]): m["detections"] for m in messages}
    tp = fp = fn = 0
    per_label_scores: dict[str, list[float]] = {}
    per_label_hits: dict[str, list[bool]] = {}
    per_label_truth: dict[str, int] = {}
    for frame, dets in by_frame.items():
        gts = truth.get(frame, [])
        labels = {g.label for g in gts} | {d["label"] for d in dets}
        for label in labels:
            g = np.array([t.box for t in gts if t.label == label], dtype=np.float64).reshape(-1, 4)
            ds = sorted((d for d in dets if d["label"] == label), key=lambda d: -d["score"])
            p = np.array([d["box"] for d in ds], dtype=np.float64).reshape(-1, 4)
            ious = iou_matrix(p, g)
            taken = np.zeros(len(g), dtype=bool)
            per_label_truth[label] = per_label_truth.get(label, 0) + len(g)
            for i, d in enumerate(ds):
                hit = False
                if len(g):
                    cand = np.where(~taken, ious[i], -1.0)
                    j = int(np.argmax(cand))
                    if cand[j] >= iou_threshold:
                        taken[j] = True
                        hit = True
                per_label_scores.setdefault(label, []).append(float(d["score"]))
                per_label_hits.setdefault(label, []).append(hit)
                tp += hit
                fp += not hit
            fn += int((~taken).sum())
    aps = {label: _average_precision(per_label_scores.get(label, []), per_label_hits.get(label, []), n)
           for label, n in per_label_truth.items() if n > 0}
    return CameraScore(
        camera=camera, frames_truth=len(truth), frames_scored=len(by_frame),
        true_positives=tp, false_positives=fp, false_negatives=fn,
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        map50=float(np.mean(list(aps.values()))) if aps else 0.0,
        ap_per_label=aps,
    )
