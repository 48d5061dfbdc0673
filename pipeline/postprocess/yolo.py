"""The YOLOv8 postprocessor under its original name: DetectionPostprocessor with the yolov8 decoder
(all anchors [B, 4+C, N], or device-selected candidates [B, 6, K])."""
from __future__ import annotations

from pipeline.postprocess.detections import BOX_DECIMALS, SCORE_DECIMALS, DetectionPostprocessor

YoloPostprocessor = DetectionPostprocessor

__all__ = ["BOX_DECIMALS", "SCORE_DECIMALS", "YoloPostprocessor"]
