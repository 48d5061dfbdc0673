"""Decode YOLOv8 outputs (all anchors [B, 4+C, N], or device-selected candidates [B, 6, K]) into
per-frame detections in source pixels."""
from __future__ import annotations

from typing import Callable

import numpy as np

from pipeline.frame import CANDIDATE_ROWS, Detection, Frame, FrameDetections, InferenceResult, OutputLayout
from pipeline.postprocess.nms import class_aware_nms

SCORE_DECIMALS = 4
BOX_DECIMALS = 1  # 0.1 px: finer is noise, coarser loses small objects' edges


class YoloPostprocessor:
    """ANCHORS layout: rows 0..3 cx, cy, w, h in model-input pixels; rows 4..: per-class
    probabilities (ultralytics exports sigmoid outputs, no separate objectness). CANDIDATES layout:
    the same boxes for the K best anchors, then their best score and its class id.

    Per frame: best class per anchor; keep anchors whose score is > score_threshold (strictly,
    as ultralytics does); map boxes to source pixels (clipped) and drop those with no area left
    (boxes wholly in the letterbox padding); class-aware NMS; at most max_detections, best first.
    NMS runs on the clipped source-pixel boxes, so max_detections is met exactly.
    """

    def __init__(self, labels: list[str], score_threshold: float, iou_threshold: float,
                 max_detections: int = 300, on_truncated: Callable[[Frame], None] | None = None) -> None:
        if not labels:
            raise ValueError("labels must name at least one class")
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        self.labels = tuple(labels)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.on_truncated = on_truncated  # a frame whose candidate list was full (see candidates.py)

    def __call__(self, result: InferenceResult) -> list[FrameDetections]:
        out = np.asarray(result.output)
        count = len(result.frames)
        candidates = result.layout is OutputLayout.CANDIDATES
        rows = CANDIDATE_ROWS if candidates else 4 + len(self.labels)
        if out.ndim != 3 or out.shape[0] != count or out.shape[1] != rows:
            raise ValueError(f"postprocess: model output is {list(out.shape)}; expected [{count}, {rows}, N] "
                             f"for {count} frames ({result.layout.value} layout, {len(self.labels)} labels)")
        if out.dtype != np.float32:
            out = out.astype(np.float32)
        if candidates:
            best_scores = out[:, 4, :]  # [B, K], best first: the device already took the max
            if out.shape[2] and self.on_truncated is not None:
                for i in np.flatnonzero(best_scores[:, -1] > self.score_threshold).tolist():
                    self.on_truncated(result.frames[i])  # even the K-th anchor passed: more may have
        else:
            best_scores = out[:, 4:, :].max(axis=1)  # [B, N]: one pass over the whole batch
        return [self._frame(out[i], best_scores[i], result, i, candidates) for i in range(count)]

    def _frame(self, out: np.ndarray, best: np.ndarray, result: InferenceResult, i: int,
               candidates: bool) -> FrameDetections:
        frame = result.frames[i]
        detections: tuple[Detection, ...] = ()
        cand = np.flatnonzero(best > self.score_threshold)
        if cand.size:
            if candidates:
                class_ids = out[5, cand].astype(np.int64)
            else:
                class_ids = out[4:, cand].argmax(axis=0)  # only for candidates: C x K, not C x N
            detections = self._decode(out[:4, cand], best[cand], class_ids, result, i)
        return FrameDetections(camera_id=frame.camera_id, index=frame.index, pts=frame.pts,
                               captured_at=frame.captured_at, width=frame.width, height=frame.height,
                               detections=detections)

    def _decode(self, cxcywh: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, result: InferenceResult,
                i: int) -> tuple[Detection, ...]:
        cx, cy, w, h = cxcywh
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        boxes = result.transforms[i].to_source(xyxy)
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not visible.all():
            boxes, scores, class_ids = boxes[visible], scores[visible], class_ids[visible]
        keep = class_aware_nms(boxes, scores, class_ids, self.iou_threshold, self.max_detections)
        rounded_boxes = np.round(boxes[keep].astype(np.float64), BOX_DECIMALS).tolist()
        rounded_scores = np.round(scores[keep].astype(np.float64), SCORE_DECIMALS).tolist()
        return tuple(Detection(label=self.labels[c], class_id=c, score=s, box=tuple(bx))
                     for c, s, bx in zip(class_ids[keep].tolist(), rounded_scores, rounded_boxes))
