"""Decode a batch's model output into per-frame detections in source pixels, for any model.format
(pipeline/postprocess/decoders.py does the format-specific part)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import numpy as np

from pipeline.frame import Detection, Frame, FrameDetections, InferenceResult, OutputLayout
from pipeline.postprocess.decoders import Decoder, Yolov8CandidatesDecoder, Yolov8Decoder, create_decoder
from pipeline.postprocess.nms import class_aware_nms

if TYPE_CHECKING:
    from pipeline.infer.model_spec import ModelSpec

log = logging.getLogger(__name__)

SCORE_DECIMALS = 4
BOX_DECIMALS = 1  # 0.1 px: finer is noise, coarser loses small objects' edges


class NonFiniteOutput(ValueError):
    """The model returned NaN for a batch and no on_nan callback takes the frames one by one."""


def decoder_for(spec: "ModelSpec") -> Decoder:
    options: dict[str, object] = {}
    if spec.format == "yolox":
        options["strides"] = spec.strides
    if spec.end2end is not None:
        e = spec.end2end
        options.update(columns=e.columns, box=e.box, normalized=e.normalized, class_base=e.class_base,
                       has_valid_column=e.has_valid_column, score_logits=e.score_logits)
    return create_decoder(spec.format, spec.num_classes, spec.input.size, **options)


class DetectionPostprocessor:
    """Per frame: the decoder's candidates over score_threshold (strictly, as ultralytics); boxes
    mapped to source pixels (clipped), those with no area left dropped (boxes wholly in the
    letterbox padding); class-aware NMS where the format needs it; at most max_detections, best first.

    The yolov8 decoder (the default) also reads the CANDIDATES layout of device-side selection; a
    frame whose K-th candidate still passed the threshold is reported through on_truncated.

    A frame whose output has NaN (an fp16 overflow, a broken export) is not decoded: with on_nan
    it is reported there and left out of the result, so the batch's other frames still go on;
    without, the whole batch raises NonFiniteOutput.
    """

    def __init__(self, labels: list[str], score_threshold: float, iou_threshold: float,
                 max_detections: int = 300, on_truncated: Callable[[Frame], None] | None = None,
                 decoder: Decoder | None = None, on_nan: Callable[[Frame], None] | None = None) -> None:
        if not labels:
            raise ValueError("labels must name at least one class")
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        self.labels = tuple(labels)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.on_truncated = on_truncated  # a frame whose candidate list was full (see candidates.py)
        self.on_nan = on_nan
        self.decoder = decoder or Yolov8Decoder(len(self.labels), 0)
        self._candidates = Yolov8CandidatesDecoder(len(self.labels), 0)

    @classmethod
    def for_model(cls, spec: "ModelSpec", score_threshold: float, iou_threshold: float, max_detections: int = 300,
                  on_truncated: Callable[[Frame], None] | None = None,
                  on_nan: Callable[[Frame], None] | None = None) -> "DetectionPostprocessor":
        return cls(list(spec.labels), score_threshold, iou_threshold, max_detections, on_truncated,
                   decoder_for(spec), on_nan)

    def __call__(self, result: InferenceResult) -> list[FrameDetections]:
        out = np.asarray(result.output)
        count = len(result.frames)
        candidates = result.layout is OutputLayout.CANDIDATES
        decoder = self._candidates if candidates else self.decoder
        if out.ndim != 3 or out.shape[0] != count or not decoder.fits(out, count):
            raise ValueError(f"postprocess: model output is {list(out.shape)}; expected {decoder.expected(count)} "
                             f"for {count} frames ({decoder.format}, {result.layout.value} layout, "
                             f"{len(self.labels)} labels)")
        if out.dtype != np.float32:
            out = out.astype(np.float32)
        bad: set[int] = set()
        if np.isnan(out.sum()):  # one pass; inf - inf is NaN too, a finite sum has no NaN
            bad = {i for i in range(count) if np.isnan(out[i]).any()}
            cameras = ", ".join(sorted({result.frames[i].camera_id for i in bad}))
            if self.on_nan is None:
                raise NonFiniteOutput(f"postprocess: model output has NaN for {len(bad)} of {count} frames "
                                      f"(cameras {cameras}); batch dropped")
            log.warning("postprocess: model output has NaN for %d of %d frames (cameras %s); those frames dropped",
                        len(bad), count, cameras)
            for i in sorted(bad):
                self.on_nan(result.frames[i])
        if candidates and out.shape[2] and self.on_truncated is not None:
            for i in np.flatnonzero(out[:, 4, -1] > self.score_threshold).tolist():
                if i not in bad:
                    self.on_truncated(result.frames[i])  # even the K-th anchor passed: more may have
        return [self._frame(out[i], result, i, decoder) for i in range(count) if i not in bad]

    def _frame(self, out: np.ndarray, result: InferenceResult, i: int, decoder: Decoder) -> FrameDetections:
        frame = result.frames[i]
        xyxy, scores, class_ids = decoder.decode(out, self.score_threshold)
        detections: tuple[Detection, ...] = ()
        if scores.size:
            detections = self._detections(xyxy, scores, class_ids, result, i, decoder.needs_nms)
        return FrameDetections(camera_id=frame.camera_id, index=frame.index, pts=frame.pts,
                               captured_at=frame.captured_at, width=frame.width, height=frame.height,
                               detections=detections)

    def _detections(self, xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, result: InferenceResult,
                    i: int, nms: bool) -> tuple[Detection, ...]:
        boxes = result.transforms[i].to_source(xyxy)
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not visible.all():
            boxes, scores, class_ids = boxes[visible], scores[visible], class_ids[visible]
        if nms:
            keep = class_aware_nms(boxes, scores, class_ids, self.iou_threshold, self.max_detections)
        else:  # end-to-end models: best first, as NMS would order them
            keep = np.argsort(-scores, kind="stable")[:self.max_detections]
        rounded_boxes = np.round(boxes[keep].astype(np.float64), BOX_DECIMALS).tolist()
        rounded_scores = np.round(scores[keep].astype(np.float64), SCORE_DECIMALS).tolist()
        return tuple(Detection(label=self.labels[c], class_id=c, score=s, box=tuple(bx))
                     for c, s, bx in zip(class_ids[keep].tolist(), rounded_scores, rounded_boxes))
