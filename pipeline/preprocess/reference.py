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


# Y'CbCr -> R'G'B' coefficients (Kr, Kb as in ITU-R BT.601 / BT.709): R = Y + cr_r * Cr,
# G = Y - cb_g * Cb - cr_g * Cr, B = Y + cb_b * Cb. The fused GPU kernel (fused.py) uses the same
# float32 constants in the same order, so it converts exactly as this reference does.
YUV_COEFFICIENTS = {
    "bt601": (1.402, 0.344136, 0.714136, 1.772),
    "bt709": (1.5748, 0.187324, 0.468124, 1.8556),
}


def nv12_to_rgb_reference(nv12: np.ndarray, width: int, height: int, matrix: str = "bt601",
                          full_range: bool = False) -> np.ndarray:
    """NV12 buffer (rows x pitch uint8: `height` luma rows, then ceil(height/2) rows of U,V pairs)
    -> HxWx3 uint8 RGB. Chroma is taken from the sample covering each pixel (no chroma filtering),
    limited range expands 16..235 / 16..240, values round to nearest and clamp to 0..255."""
    cr_r, cb_g, cr_g, cb_b = (np.float32(c) for c in YUV_COEFFICIENTS[matrix])
    y = nv12[:height, :width].astype(np.float32)
    uv = nv12[height:height + (height + 1) // 2]
    u = uv[:, 0:2 * ((width + 1) // 2):2].astype(np.float32)
    v = uv[:, 1:2 * ((width + 1) // 2):2].astype(np.float32)
    u = np.repeat(np.repeat(u, 2, 0), 2, 1)[:height, :width]
    v = np.repeat(np.repeat(v, 2, 0), 2, 1)[:height, :width]
    if full_range:
        cb, cr = u - np.float32(128), v - np.float32(128)
    else:
        y = (y - np.float32(16)) * np.float32(255.0 / 219.0)
        cb = (u - np.float32(128)) * np.float32(255.0 / 224.0)
        cr = (v - np.float32(128)) * np.float32(255.0 / 224.0)
    r = y + cr_r * cr
    g = y - cb_g * cb - cr_g * cr
    b = y + cb_b * cb
    rgb = np.stack([r, g, b], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def rgb_to_nv12_reference(rgb: np.ndarray, matrix: str = "bt601", full_range: bool = False) -> np.ndarray:
    """HxWx3 uint8 RGB -> NV12 buffer (rows x even pitch), chroma averaged over 2x2 blocks. The
    inverse of nv12_to_rgb_reference up to rounding; makes NV12 test pictures from RGB ones."""
    h, w = rgb.shape[:2]
    cr_r, cb_g, cr_g, cb_b = YUV_COEFFICIENTS[matrix]
    kr = 1.0 - cr_r / 2.0  # cr_r = 2 (1 - Kr)
    kb = 1.0 - cb_b / 2.0  # cb_b = 2 (1 - Kb)
    f = rgb.astype(np.float64)
    y = kr * f[..., 0] + (1.0 - kr - kb) * f[..., 1] + kb * f[..., 2]
    cb = (f[..., 2] - y) / cb_b
    cr = (f[..., 0] - y) / cr_r
    if not full_range:
        y = y * 219.0 / 255.0 + 16.0
        cb = cb * 224.0 / 255.0
        cr = cr * 224.0 / 255.0
    ch, cw = (h + 1) // 2, (w + 1) // 2
    pad = np.pad(np.stack([cb, cr], -1), ((0, 2 * ch - h), (0, 2 * cw - w), (0, 0)), mode="edge")
    chroma = pad.reshape(ch, 2, cw, 2, 2).mean(axis=(1, 3)) + 128.0
    pitch = w + (w & 1)
    out = np.zeros((h + ch, pitch), np.uint8)
    out[:h, :w] = np.clip(np.rint(y), 0, 255)
    out[h:, :2 * cw] = np.clip(np.rint(chroma), 0, 255).reshape(ch, 2 * cw)
    return out
