"""The preprocessing stage's interface: FrameBatch -> TensorBatch (letterboxed, 0..1, RGB, CHW).

The shared part lives here: checking each frame's image before any backend sees it (a bad frame is
rejected on its own and reported through `on_reject`, so one broken camera never costs the other
cameras their batch), computing each frame's LetterboxTransform and assembling the TensorBatch.
Backends only implement `_letterbox`.
"""
from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.frame import Frame, FrameBatch, LetterboxTransform, TensorBatch

log = logging.getLogger(__name__)

OUTPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8))


@dataclass(frozen=True)
class InputConvention:
    """What the model's input takes (model.input, resolved by pipeline/infer/model_spec.py):
    value = (pixel * scale - mean) / std per channel, mean/std in the model's channel order; uint8
    takes the pixels as they are. The default is the YOLO convention: NCHW RGB 0..1, letterbox 114."""

    layout: str = "NCHW"  # or "NHWC"
    channels: str = "RGB"  # or "BGR"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "letterbox"  # or "stretch"
    pad_value: int = 114

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC") or self.channels not in ("RGB", "BGR") \
                or self.resize not in ("letterbox", "stretch"):
            raise ValueError(f"preprocess: bad input convention {self}")

    @property
    def normalized(self) -> bool:
        """Whether mean/std do anything (the plain x * scale path is exact and faster)."""
        return any(self.mean) or any(s != 1.0 for s in self.std)

    def shape(self, batch: int, size: int) -> tuple[int, int, int, int]:
        return (batch, 3, size, size) if self.layout == "NCHW" else (batch, size, size, 3)

    def fit(self, width: int, height: int, size: int) -> LetterboxTransform:
        return _transform(self.resize == "stretch", width, height, size)


@functools.lru_cache(maxsize=1024)
def _transform(stretch: bool, width: int, height: int, size: int) -> LetterboxTransform:
    """A camera's frames all have one size: its transform is made once (it is frozen), not per frame."""
    return LetterboxTransform.stretch(width, height, size) if stretch else LetterboxTransform.fit(width, height, size)


YOLO_INPUT = InputConvention()

# Called once per rejected frame with a one-line reason; the daemon counts these as drops.
RejectFrame = Callable[[Frame, str], None]


class PreprocessError(RuntimeError):
    """The backend failed on a batch that passed the per-frame checks (message is one line)."""


def log_rejected_frame(frame: Frame, reason: str) -> None:
    log.warning("preprocess: camera %s frame %d rejected: %s", frame.camera_id, frame.index, reason)


def output_dtype(dtype: Any) -> np.dtype:
    """numpy dtype for the model input: float32, float16 or uint8."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"preprocess: dtype {dtype!r} is not a numpy dtype (use float32, float16 or uint8)") from None
    if dt not in OUTPUT_DTYPES:
        raise ValueError(f"preprocess: dtype {dt} is not supported (use float32, float16 or uint8)")
    return dt


def is_device_image(image: Any) -> bool:
    return hasattr(image, "__cuda_array_interface__") and not isinstance(image, np.ndarray)


def host_image_problem(image: Any) -> str | None:
    """Why `image` is not an HxWx3 uint8 numpy array (None when it is)."""
    if not isinstance(image, np.ndarray):
        return f"image is {type(image).__name__}, expected an HxWx3 uint8 numpy array"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"image shape {image.shape} is not HxWx3"
    if image.dtype != np.uint8:
        return f"image dtype {image.dtype} is not uint8"
    if image.shape[0] < 1 or image.shape[1] < 1:
        return f"image shape {image.shape} is empty"
    return None


def device_image_problem(image: Any) -> str | None:
    """Why a __cuda_array_interface__ image is not a C-contiguous HxWx3 uint8 array (None when it is)."""
    try:
        cai = image.__cuda_array_interface__
        shape = tuple(cai["shape"])
        typestr = cai["typestr"]
        strides = cai.get("strides")
    except Exception as exc:  # a broken producer: report it, do not crash the batch thread
        return f"image's __cuda_array_interface__ is unreadable ({type(exc).__name__}: {exc})"
    if len(shape) != 3 or shape[2] != 3:
        return f"device image shape {shape} is not HxWx3"
    if typestr.lstrip("|<>=") != "u1":
        return f"device image typestr {typestr!r} is not uint8 ('|u1')"
    if shape[0] < 1 or shape[1] < 1:
        return f"device image shape {shape} is empty"
    if strides is not None and tuple(strides) != (shape[1] * 3, 3, 1):
        return f"device image strides {tuple(strides)} are not C-contiguous"
    return None


def image_size(image: Any) -> tuple[int, int]:
    """(width, height) of a checked host or device image (an NV12 surface says its own)."""
    if getattr(image, "pixel_format", None) == "nv12":
        return int(image.width), int(image.height)
    shape = image.__cuda_array_interface__["shape"] if is_device_image(image) else image.shape
    return int(shape[1]), int(shape[0])


class Preprocessor(ABC):
    """Letterboxes a FrameBatch into the model input. One instance is used by one thread."""

    device: str = "cpu"

    def __init__(self, input_size: int, dtype: Any, max_batch: int,
                 on_reject: RejectFrame | None = None, convention: InputConvention = YOLO_INPUT) -> None:
        if not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"preprocess: input_size {input_size!r} must be a positive int")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"preprocess: max_batch {max_batch!r} must be a positive int")
        self.input_size = input_size
        self.dtype = output_dtype(dtype)
        self.max_batch = max_batch
        self.convention = convention
        self._on_reject = on_reject or log_rejected_frame
        self._closed = False

    def __call__(self, batch: FrameBatch) -> TensorBatch:
        if self._closed:
            raise RuntimeError("preprocess: preprocessor used after close()")
        if len(batch.frames) > self.max_batch:
            raise ValueError(f"preprocess: batch of {len(batch.frames)} frames exceeds max_batch {self.max_batch}")
        frames: list[Frame] = []
        for frame, problem in zip(batch.frames, self._frame_problems(batch.frames)):
            if problem is None:
                frames.append(frame)
            else:
                self._on_reject(frame, problem)
        transforms = tuple(self.convention.fit(*image_size(f.image), self.input_size) for f in frames)
        if frames:
            tensor = self._letterbox([f.image for f in frames], transforms)
        else:  # every frame was rejected (or the batch was empty): nothing for the backend to run
            tensor = np.zeros(self.convention.shape(0, self.input_size), self.dtype)
        # The pixels are in the tensor now: the frames go on without them, so their buffers (pooled
        # NVDEC pictures, a decode worker's memory and its back-pressure credits) come back at once
        # instead of after inference and postprocessing.
        frames_without_pixels = tuple(f.with_image(None) for f in frames)
        return TensorBatch(frames=frames_without_pixels, transforms=transforms, tensor=tensor,
                           formed_at=batch.formed_at)

    def _frame_problems(self, frames: Sequence[Frame]) -> list[str | None]:
        """One entry per frame: None if the backend can take its image, else a one-line reason."""
        return [frame_problem(f, allow_device=False) for f in frames]

    @abstractmethod
    def _letterbox(self, images: Sequence[Any], transforms: Sequence[LetterboxTransform]) -> Any:
        """Checked images (same order as transforms) -> [B,3,S,S] (or [B,S,S,3]) tensor of self.dtype."""

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> "Preprocessor":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def frame_problem(frame: Frame, allow_device: bool, allow_nv12: bool = False) -> str | None:
    """Why the frame's image cannot be letterboxed (None when it can).

    Host images must be HxWx3 uint8 numpy arrays; with allow_device, HxWx3 uint8 device arrays
    (__cuda_array_interface__) pass too, and with allow_nv12 NV12 device surfaces
    (pipeline/gpu/nv12.py). The image must also have the size the frame claims.
    """
    if getattr(frame.image, "pixel_format", None) == "nv12":
        problem = None if allow_nv12 else (
            "image is an NV12 surface (decode.nvdec_output: nv12), which only preprocess.kernel "
            "fused on the gpu takes")
    elif is_device_image(frame.image):
        problem = device_image_problem(frame.image) if allow_device else \
            "image is a device array (__cuda_array_interface__) but this preprocessor runs on the cpu"
    else:
        problem = host_image_problem(frame.image)
    if problem is not None:
        return problem
    w, h = image_size(frame.image)
    if (w, h) != (frame.width, frame.height):
        return f"image is {w}x{h} but the frame says {frame.width}x{frame.height}"
    return None
