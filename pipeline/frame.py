"""Data that crosses stage boundaries. Every type is a frozen dataclass.

Flow: Source -> Frame -> BatchScheduler -> FrameBatch -> Preprocessor -> TensorBatch
-> Backend/Postprocessor -> FrameDetections -> [Analytics: track ids, FrameEvents] -> Publisher.  Sources also emit StatusEvent.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class LetterboxTransform:
    """How a source frame maps into the square model input (and back).

    model_xy = source_xy * scale + (pad_x, pad_y)
    """

    src_width: int
    src_height: int
    input_size: int
    scale: float
    resized_width: int
    resized_height: int
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, src_width: int, src_height: int, input_size: int) -> "LetterboxTransform":
        scale = min(input_size / src_width, input_size / src_height)
        rw = max(1, min(input_size, int(round(src_width * scale))))
        rh = max(1, min(input_size, int(round(src_height * scale))))
        pad_x = (input_size - rw) // 2
        pad_y = (input_size - rh) // 2
        return cls(src_width, src_height, input_size, scale, rw, rh, pad_x, pad_y)

    @classmethod
    def stretch(cls, src_width: int, src_height: int, input_size: int) -> "LetterboxTransform":
        """The whole frame resized to SxS, aspect ratio not kept (model.input.resize: stretch)."""
        scale = min(input_size / src_width, input_size / src_height)
        return cls(src_width, src_height, input_size, scale, input_size, input_size, 0, 0)

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map [N,4] x1,y1,x2,y2 boxes from model-input pixels to source pixels, clipped."""
        out = np.asarray(boxes, dtype=np.float32).copy()
        sx = self.resized_width / self.src_width
        sy = self.resized_height / self.src_height
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / sx
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / sy
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.src_width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.src_height)
        return out


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded picture from one camera.

    image: HxWx3 uint8 RGB. On the CPU path a numpy array; on the GPU path an object
    exposing __cuda_array_interface__ (the pixels never visit host memory).
    index: the source's frame counter (gaps mean frames were dropped before decode/queue).
    pts: presentation time in seconds from the stream (None if unknown).
    captured_at: Unix seconds when the frame was decoded (live) or read (files).
    """

    camera_id: str
    index: int
    pts: float | None
    captured_at: float
    width: int
    height: int
    image: Any  # None after preprocessing (TensorBatch frames): the pixels are in the tensor

    def with_image(self, image: Any) -> "Frame":
        """This frame with other pixels (or None): dataclasses.replace() at a third of its cost,
        for the paths every frame takes."""
        return Frame(self.camera_id, self.index, self.pts, self.captured_at, self.width, self.height, image)


@dataclass(frozen=True, eq=False)
class FrameBatch:
    """Frames from one or more cameras that the scheduler released together."""

    frames: tuple[Frame, ...]
    formed_at: float  # monotonic seconds when released
    oldest_wait_s: float  # how long the oldest frame waited in the scheduler

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True, eq=False)
class TensorBatch:
    """Preprocessed model input for a FrameBatch.

    tensor: [B,3,S,S] float32/float16, 0..1, RGB, CHW. numpy on CPU; a device buffer
    (__cuda_array_interface__) on the GPU path.
    """

    frames: tuple[Frame, ...]
    transforms: tuple[LetterboxTransform, ...]
    tensor: Any
    formed_at: float


CANDIDATE_ROWS = 6  # rows of the CANDIDATES layout: cx, cy, w, h, score, class id


class OutputLayout(enum.Enum):
    """What InferenceResult.output holds (see pipeline/infer/candidates.py)."""

    # the model's own output, as model.format lays it out (yolov8 [B, 4+C, N]: every anchor's cx, cy,
    # w, h and class scores; yolov5/yolox [B, N, 5+C]; end2end [B, N, cols], several outputs side by side)
    ANCHORS = "anchors"
    CANDIDATES = "candidates"  # [B, 6, K]: the K best anchors' cx, cy, w, h, score, class id


@dataclass(frozen=True, eq=False)
class InferenceResult:
    """Model output for a TensorBatch, float32 on the host, in the layout `layout` names."""

    frames: tuple[Frame, ...]
    transforms: tuple[LetterboxTransform, ...]
    output: np.ndarray
    formed_at: float
    layout: OutputLayout = OutputLayout.ANCHORS


@dataclass(frozen=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    track_id: int | None = None  # per camera, from 1, never reused in a run; None: not tracked


@dataclass(frozen=True, eq=False)
class FrameDetections:
    """Everything the publisher needs for one detections message (seq is the publisher's)."""

    camera_id: str
    index: int
    pts: float | None
    captured_at: float
    width: int
    height: int
    detections: tuple[Detection, ...]


@dataclass(frozen=True, eq=False)
class DetectionsBatch:
    """One inference batch's detections, in frame order: what postprocess hands on, so the stages
    after it (analytics, publish) take one queue item per batch instead of one per frame (the
    daemon's one interpreter lock was the end-to-end limit: docs/BENCHMARKS.md, issue 22)."""

    items: tuple[FrameDetections, ...]

    @property
    def camera_ids(self) -> tuple[str, ...]:
        return tuple(fd.camera_id for fd in self.items)


class CameraState(str, enum.Enum):
    STARTING = "starting"
    UP = "up"
    RECONNECTING = "reconnecting"
    DOWN = "down"
    EOF = "eof"
    STOPPED = "stopped"


# States a camera's source never leaves (its thread or worker slot is finished).
TERMINAL_STATES = frozenset({CameraState.EOF, CameraState.DOWN, CameraState.STOPPED})


@dataclass(frozen=True)
class StatusEvent:
    camera_id: str
    state: CameraState
    at: float  # Unix seconds
    reason: str = ""


# ---------------------------------------------------------------- analytics (pipeline/analytics/)

EventKind = Literal["zone_enter", "zone_exit", "loitering", "line_cross"]


@dataclass(frozen=True)
class AnalyticsEvent:
    kind: EventKind
    track_id: int
    label: str
    class_id: int
    zone: str | None  # the zone's name (zone_enter, zone_exit, loitering)
    line: str | None  # the line's name (line_cross)
    direction: Literal["forward", "backward"] | None  # line_cross: see docs/messages.md
    dwell_s: float | None  # zone_exit, loitering: seconds since zone_enter (stream time)
    box: tuple[float, float, float, float]  # the track's last detection box, source pixels
    snapshot: str | None = None  # the preview's annotated JPEG of this event (docs/preview.md), if any


@dataclass(frozen=True, eq=False)
class FrameEvents:
    """The events one frame caused, with the camera's running counts after them."""

    camera_id: str
    index: int
    pts: float | None
    captured_at: float
    events: tuple[AnalyticsEvent, ...]
    # ((zone or line name, label, what: enter/exit/loitering/forward/backward), count) since start
    counts: tuple[tuple[tuple[str, str, str], int], ...]
