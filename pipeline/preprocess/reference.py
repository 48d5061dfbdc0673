"""Reference letterbox in numpy/OpenCV: the ground truth the DALI pipeline is tested against,
and the preprocessing used to train the demo detector."""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from pipeline.frame import LetterboxTransform
from pipeline.preprocess.base import Preprocessor, RejectFrame

PAD_VALUE = 114  # grey, as YOLO models are trained


def letterbox_reference(image: np.ndarray, input_size: int) -> tuple[np.ndarray, LetterboxTransform]:
    """HxWx3 uint8 RGB -> (3xSxS float32 in 0..1, transform)."""
    h, w = image.shape[:2]
    t = LetterboxTransform.fit(w, h, input_size)
    resized = cv2.resize(image, (t.resized_width, t.resized_height), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((input_size, input_size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[t.pad_y:t.pad_y + t.resized_height, t.pad_x:t.pad_x + t.resized_width] = resized
    return canvas.transpose(2, 0, 1).astype(np.float32) / 255.0, t


class ReferencePreprocessor(Preprocessor):
    """letterbox_reference per frame, stacked: the CPU fallback when DALI is unavailable, and the
    truth in tests. fp16 output is the float32 result cast to float16 (as DALI produces it)."""

    device = "cpu"

    def __init__(self, input_size: int, dtype: Any = np.float32, max_batch: int = 16,
                 on_reject: RejectFrame | None = None) -> None:
        super().__init__(input_size, dtype, max_batch, on_reject)

    def _letterbox(self, images: Sequence[Any], transforms: Sequence[LetterboxTransform]) -> np.ndarray:
        out = np.empty((len(images), 3, self.input_size, self.input_size), self.dtype)
        for i, image in enumerate(images):
            out[i] = letterbox_reference(image, self.input_size)[0]
        return out
