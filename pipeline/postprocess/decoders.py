"""One output decoder per model.format, behind a small registry (the plug-in pattern of backends).

A decoder turns one image's output into candidate boxes x1, y1, x2, y2 in model-input pixels, their
scores and class ids, already cut at the score threshold. `needs_nms` says whether the postprocess
must run NMS (raw anchor grids) or not (end-to-end models already did).

    yolov8   [B, 4+C, N]  cx, cy, w, h (input px), C class probabilities       (ultralytics v8/v9/v11)
    yolov5   [B, N, 5+C]  cx, cy, w, h (input px), objectness, C class probs   (YOLOv5, YOLOv7)
    yolox    [B, N, 5+C]  raw grid offsets, log sizes, objectness, C class probs (YOLOX export_onnx.py)
    end2end  [B, N, cols] decoded detections, columns as model.end2end says    (YOLOv10, RT-DETR, TF OD API)
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, TypeVar

import numpy as np

from pipeline.frame import CANDIDATE_ROWS

Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]  # xyxy [K,4] float32, scores [K], class ids [K] int64

_DECODERS: dict[str, type["Decoder"]] = {}
D = TypeVar("D", bound=type["Decoder"])


def register_decoder(cls: D) -> D:
    key = getattr(cls, "format", None)
    if not isinstance(key, str) or not key:
        raise TypeError(f"{cls.__name__} must declare a non-empty format")
    if key in _DECODERS and _DECODERS[key] is not cls:
        raise TypeError(f"decoder format {key!r} is already registered by {_DECODERS[key].__name__}")
    _DECODERS[key] = cls
    return cls


def known_formats() -> list[str]:
    return sorted(_DECODERS)


def create_decoder(fmt: str, num_classes: int, input_size: int, **options: object) -> "Decoder":
    cls = _DECODERS.get(fmt)
    if cls is None:
        raise ValueError(f"model.format: unknown format {fmt!r}; known: {', '.join(known_formats())}")
    return cls(num_classes, input_size, **options)


def _empty() -> Candidates:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


def cxcywh_to_xyxy(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


class Decoder(ABC):
    format: ClassVar[str]
    needs_nms: ClassVar[bool] = True

    def __init__(self, num_classes: int, input_size: int) -> None:
        self.num_classes = num_classes
        self.input_size = input_size

    @abstractmethod
    def expected(self, count: int) -> str:
        """The output shape this decoder wants for `count` images, for error messages."""

    @abstractmethod
    def fits(self, out: np.ndarray, count: int) -> bool:
        """Whether a batch output has this decoder's shape."""

    @abstractmethod
    def decode(self, out: np.ndarray, score_threshold: float) -> Candidates:
        """One image's output -> candidates with score > score_threshold."""


@register_decoder
class Yolov8Decoder(Decoder):
    """[4+C, N]: best class per anchor (lowest id on ties), score > threshold strictly, as ultralytics."""

    format = "yolov8"

    def expected(self, count: int) -> str:
        return f"[{count}, {4 + self.num_classes}, N]"

    def fits(self, out: np.ndarray, count: int) -> bool:
        return out.ndim == 3 and out.shape[1] == 4 + self.num_classes

    def decode(self, out: np.ndarray, score_threshold: float) -> Candidates:
        best = out[4:].max(axis=0)
        cand = np.flatnonzero(best > score_threshold)
        if not cand.size:
            return _empty()
        class_ids = out[4:, cand].argmax(axis=0)  # only for candidates: C x K, not C x N
        return cxcywh_to_xyxy(*out[:4, cand]), best[cand], class_ids.astype(np.int64)


class Yolov8CandidatesDecoder(Yolov8Decoder):
    """[6, K] from the device-side selection (pipeline/infer/candidates.py): boxes, best score, class id."""

    def expected(self, count: int) -> str:
        return f"[{count}, {CANDIDATE_ROWS}, K]"

    def fits(self, out: np.ndarray, count: int) -> bool:
        return out.ndim == 3 and out.shape[1] == CANDIDATE_ROWS

    def decode(self, out: np.ndarray, score_threshold: float) -> Candidates:
        cand = np.flatnonzero(out[4] > score_threshold)
        if not cand.size:
            return _empty()
        return cxcywh_to_xyxy(*out[:4, cand]), out[4, cand], out[5, cand].astype(np.int64)


@register_decoder
class Yolov5Decoder(Decoder):
    """[N, 5+C]: score = objectness x best class probability (YOLOv5's non_max_suppression)."""

    format = "yolov5"

    def expected(self, count: int) -> str:
        return f"[{count}, N, {5 + self.num_classes}]"

    def fits(self, out: np.ndarray, count: int) -> bool:
        return out.ndim == 3 and out.shape[2] == 5 + self.num_classes

    def _boxes(self, out: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return cxcywh_to_xyxy(*out[rows, :4].T)

    def decode(self, out: np.ndarray, score_threshold: float) -> Candidates:
        # score <= objectness: cheap prefilter before touching the class columns
        rows = np.flatnonzero(out[:, 4] > score_threshold)
        if not rows.size:
            return _empty()
        cls = out[rows, 5:]
        class_ids = cls.argmax(axis=1)
        scores = out[rows, 4] * cls[np.arange(rows.size), class_ids]
        keep = scores > score_threshold
        rows, scores, class_ids = rows[keep], scores[keep], class_ids[keep]
        return self._boxes(out, rows), scores.astype(np.float32), class_ids.astype(np.int64)


@register_decoder
class YoloxDecoder(Yolov5Decoder):
    """YOLOX's default ONNX export (decode_in_inference off): per grid cell of strides 8/16/32,
    row-major, stride 8 first: cx = (x + col) * s, cy = (y + row) * s, w = exp(w) * s, h = exp(h) * s;
    objectness and class columns are already sigmoid. Then scored as YOLOv5."""

    format = "yolox"

    def __init__(self, num_classes: int, input_size: int, strides: tuple[int, ...] = (8, 16, 32)) -> None:
        super().__init__(num_classes, input_size)
        grids, steps = [], []
        for s in strides:
            g = input_size // s
            rows, cols = np.divmod(np.arange(g * g), g)
            grids.append(np.stack([cols, rows], axis=1))
            steps.append(np.full(g * g, s))
        self.grid = np.concatenate(grids).astype(np.float32)
        self.stride = np.concatenate(steps).astype(np.float32)

    def fits(self, out: np.ndarray, count: int) -> bool:
        return super().fits(out, count) and out.shape[1] == len(self.stride)

    def expected(self, count: int) -> str:
        return f"[{count}, {len(self.stride)}, {5 + self.num_classes}]"

    def _boxes(self, out: np.ndarray, rows: np.ndarray) -> np.ndarray:
        s = self.stride[rows]
        xy = (out[rows, :2] + self.grid[rows]) * s[:, None]
        wh = np.exp(out[rows, 2:4]) * s[:, None]
        return cxcywh_to_xyxy(xy[:, 0], xy[:, 1], wh[:, 0], wh[:, 1])


@register_decoder
class End2EndDecoder(Decoder):
    """[N, cols] already-decoded detections: columns box/score/class/classes/skip, an optional last
    valid column (from num_detections); no NMS."""

    format = "end2end"
    needs_nms = False

    def __init__(self, num_classes: int, input_size: int, columns: tuple[str, ...] = ("box", "score", "class"),
                 box: str = "xyxy", normalized: bool = False, class_base: int = 0,
                 has_valid_column: bool = False, score_logits: bool = False) -> None:
        super().__init__(num_classes, input_size)
        self.score_logits = score_logits
        self.box, self.normalized, self.class_base, self.has_valid = box, normalized, class_base, has_valid_column
        self.at: dict[str, int] = {}
        pos = 0
        for c in columns:
            self.at[c] = pos
            pos += 4 if c == "box" else num_classes if c == "classes" else 1
        self.width = pos + (1 if has_valid_column else 0)

    def expected(self, count: int) -> str:
        return f"[{count}, N, {self.width}]"

    def fits(self, out: np.ndarray, count: int) -> bool:
        return out.ndim == 3 and out.shape[2] == self.width

    def decode(self, out: np.ndarray, score_threshold: float) -> Candidates:
        if "classes" in self.at:
            cls = out[:, self.at["classes"]:self.at["classes"] + self.num_classes]
            class_ids = cls.argmax(axis=1)
            scores = cls[np.arange(len(cls)), class_ids]
        else:
            scores = out[:, self.at["score"]]
            class_ids = (np.rint(out[:, self.at["class"]]).astype(np.int64) - self.class_base
                         if "class" in self.at else np.zeros(len(out), np.int64))
        if self.score_logits:  # sigmoid is monotonic: the best class is the same before and after
            scores = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
        keep = scores > score_threshold
        if self.has_valid:
            keep &= out[:, -1] > 0.5
        keep &= (class_ids >= 0) & (class_ids < self.num_classes)  # padding rows carry -1 or junk
        rows = np.flatnonzero(keep)
        if not rows.size:
            return _empty()
        b = out[rows, self.at["box"]:self.at["box"] + 4].T
        if self.box == "xyxy":
            xyxy = np.stack(b, axis=1)
        elif self.box == "yxyx":
            xyxy = np.stack([b[1], b[0], b[3], b[2]], axis=1)
        elif self.box == "xywh":
            xyxy = np.stack([b[0], b[1], b[0] + b[2], b[1] + b[3]], axis=1)
        else:
            xyxy = cxcywh_to_xyxy(*b)
        if self.normalized:
            xyxy = xyxy * np.float32(self.input_size)
        return xyxy.astype(np.float32), scores[rows].astype(np.float32), class_ids[rows].astype(np.int64)
