"""Reference letterbox in numpy/OpenCV: the ground truth the DALI pipeline is tested against,
and the preprocessing used to train the demo detector. Covers every InputConvention option."""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from pipeline.frame import LetterboxTransform
from pipeline.preprocess.base import YOLO_INPUT, InputConvention, Preprocessor, RejectFrame

PAD_VALUE = 114  # grey, as YOLO models are trained


def letterbox_reference(image: np.ndarray, input_size: int, convention: InputConvention = YOLO_INPUT,
                        dtype: Any = np.float32) -> tuple[np.ndarray, LetterboxTransform]:
    """HxWx3 uint8 RGB -> (one image of the model input, transform). Default: 3xSxS float32 in 0..1.

    The canvas is uint8 (resized picture on pad_value grey), channels reordered for BGR, then
    (pixel * scale - mean) / std in float32 (x / 255 exactly for the default scale), cast to dtype,
    HWC -> CHW for NCHW. uint8 returns the canvas pixels."""
    h, w = image.shape[:2]
    t = convention.fit(w, h, input_size)
    resized = cv2.resize(image, (t.resized_width, t.resized_height), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((input_size, input_size, 3), convention.pad_value, dtype=np.uint8)
    canvas[t.pad_y:t.pad_y + t.resized_height, t.pad_x:t.pad_x + t.resized_width] = resized
    if convention.channels == "BGR":
        canvas = canvas[:, :, ::-1]
    if np.dtype(dtype) == np.uint8:
        values: np.ndarray = canvas
    else:
        values = canvas.astype(np.float32)
        if convention.scale == 1 / 255:
            values /= np.float32(255.0)
        else:
            values *= np.float32(convention.scale)
        if convention.normalized:
            values = (values - np.float32(convention.mean)) / np.float32(convention.std)
        values = values.astype(dtype)
    if convention.layout == "NCHW":
        values = values.transpose(2, 0, 1)
    return np.ascontiguousarray(values), t


class ReferencePreprocessor(Preprocessor):
    """letterbox_reference per frame, stacked: the CPU fallback when DALI is unavailable, and the
    truth in tests. fp16 output is the float32 result cast to float16 (as DALI produces it)."""

    device = "cpu"

    def __init__(self, input_size: int, dtype: Any = np.float32, max_batch: int = 16,
                 on_reject: RejectFrame | None = None, convention: InputConvention = YOLO_INPUT) -> None:
        super().__init__(input_size, dtype, max_batch, on_reject, convention)

    def _letterbox(self, images: Sequence[Any], transforms: Sequence[LetterboxTransform]) -> np.ndarray:
        out = np.empty(self.convention.shape(len(images), self.input_size), self.dtype)
        for i, image in enumerate(images):
            out[i] = letterbox_reference(image, self.input_size, self.convention, self.dtype)[0]
        return out
