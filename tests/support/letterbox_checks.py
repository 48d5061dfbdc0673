"""The comparison with the reference letterbox, under the tolerance DaliLetterbox documents."""
from __future__ import annotations

import numpy as np

from pipeline.frame import LetterboxTransform
from pipeline.preprocess.reference import PAD_VALUE, letterbox_reference

# DALI linear resize vs cv2.INTER_LINEAR: cv2 rounds in 11-bit fixed point, DALI in float, so single
# values differ by one grey level at most; on average far less.
MAX_DIFF = 1 / 255 + 1e-6
MEAN_DIFF = 0.25 / 255
FP16_EXTRA = 2.0 ** -11  # float16 rounding of values in 0..1 adds at most half an ulp (2^-12)


def assert_matches_reference(out: np.ndarray, image: np.ndarray, t: LetterboxTransform) -> None:
    """out (3xSxS, float32 or float16) is the reference letterbox of image within tolerance:
    exact padding, at most one grey level apart inside the picture and much less on average."""
    ref, ref_t = letterbox_reference(image, t.input_size)
    assert ref_t == t
    assert out.shape == ref.shape
    inside = np.zeros(out.shape, bool)
    inside[:, t.pad_y:t.pad_y + t.resized_height, t.pad_x:t.pad_x + t.resized_width] = True
    pad = np.asarray(np.float32(PAD_VALUE) / np.float32(255), out.dtype)
    assert np.all(out[~inside] == pad), "padding is not exactly 114/255"
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))[inside]
    max_diff = MAX_DIFF + (FP16_EXTRA if out.dtype == np.float16 else 0.0)
    assert diff.max() <= max_diff, f"max diff {diff.max() * 255:.3f}/255 in the picture"
    assert diff.mean() <= MEAN_DIFF, f"mean diff {diff.mean() * 255:.3f}/255 in the picture"


def same_frames_without_pixels(out_frames: tuple, frames: list) -> bool:
    """A TensorBatch's frames are the input frames, in order, with their pixels dropped (the
    preprocessor lets go of them once they are in the tensor)."""
    key = [(f.camera_id, f.index, f.pts, f.captured_at, f.width, f.height) for f in frames]
    return (all(f.image is None for f in out_frames)
            and [(f.camera_id, f.index, f.pts, f.captured_at, f.width, f.height) for f in out_frames] == key)
