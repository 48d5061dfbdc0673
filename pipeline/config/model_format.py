"""model.format and model.input: which output decoder a detector needs and what its input takes.

Every field defaults to "read it from the model" (None / auto); pipeline/infer/model_spec.py
resolves the defaults from the ONNX file (input shape and type, output shapes, ultralytics metadata)
and says at start-up what it resolved. docs/models.md lists the formats and the export commands.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config.base import StrictModel

# The decoders in pipeline/postprocess/decoders.py (one registered class each); auto picks by shape.
MODEL_FORMATS = ("auto", "yolov8", "yolov5", "end2end", "yolox")
ModelFormat = Literal["auto", "yolov8", "yolov5", "end2end", "yolox"]

# End-to-end column names: `box` takes 4 columns (encoded as end2end.box says), `score` and
# `class` one each, `classes` every remaining column (one score per class; the best wins),
# `skip` one ignored column (e.g. a batch index).
End2EndColumn = Literal["box", "score", "class", "classes", "skip"]


class End2EndConfig(StrictModel):
    """Already-decoded detections (YOLOv10, ultralytics RT-DETR, TF OD API, NMS-in-graph exports):
    no NMS is run. None fields are read from the model (output names and shapes)."""

    # Single output [B, N, cols]: the column order; several outputs: concatenated in `outputs` order.
    columns: list[End2EndColumn] | None = None
    box: Literal["xyxy", "xywh", "cxcywh", "yxyx"] | None = None
    normalized: bool | None = None  # boxes in 0..1 of the input (True) or in input pixels (False)
    class_base: int | None = Field(None, ge=0, le=1)  # 1: class ids start at 1 (TF OD API)
    # Several outputs: their names in column order (boxes, scores, classes); None: found by name.
    outputs: list[str] | None = None
    num_detections: str | None = None  # an output [B] or [B,1] counting the valid rows
    score_logits: bool = False  # scores are logits (RF-DETR): a sigmoid makes them probabilities

    @model_validator(mode="after")
    def _columns_once(self) -> "End2EndConfig":
        cols = self.columns or []
        for name in ("box", "score", "class", "classes"):
            if cols.count(name) > 1:
                raise ValueError(f"columns names {name!r} {cols.count(name)} times")
        if cols and "box" not in cols:
            raise ValueError("columns must include 'box'")
        if cols and "score" not in cols and "classes" not in cols:
            raise ValueError("columns must include 'score' or 'classes'")
        if "classes" in cols and ("score" in cols or "class" in cols):
            raise ValueError("columns: 'classes' (one score per class) excludes 'score' and 'class'")
        return self


class ModelInputConfig(StrictModel):
    """How frames become the model's input. value = (pixel * scale - mean) / std per channel
    (pixel 0..255); dtype uint8 passes pixels unchanged (scale 1, mean 0, std 1)."""

    layout: Literal["NCHW", "NHWC"] | None = None  # None: from the input shape (where 3 channels are)
    channels: Literal["RGB", "BGR"] = "RGB"
    dtype: Literal["float32", "float16", "uint8"] | None = None  # None: the model input's type
    scale: float | None = Field(None, gt=0.0, le=1.0)  # None: 1/255 for float inputs, 1 for uint8
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: Literal["letterbox", "stretch"] = "letterbox"
    pad_value: int = Field(114, ge=0, le=255)  # letterbox border grey (YOLO trains on 114)

    @field_validator("std")
    @classmethod
    def _std_positive(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in v):
            raise ValueError(f"std {list(v)} must be > 0 in every channel")
        return v

    @model_validator(mode="after")
    def _uint8_raw(self) -> "ModelInputConfig":
        if self.dtype == "uint8" and ((self.scale not in (None, 1.0)) or any(self.mean)
                                      or any(s != 1.0 for s in self.std)):
            raise ValueError("dtype uint8 takes raw pixels: leave scale, mean and std at their defaults")
        return self
