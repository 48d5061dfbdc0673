"""The reference letterbox (the demo model's training preprocessing) and ReferencePreprocessor.

Pinned by hand-computable cases, so a change to its numbers fails here rather than in the model.
"""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.frame import Frame, FrameBatch, LetterboxTransform
from pipeline.preprocess import ReferencePreprocessor, letterbox_reference

from tests.support.letterbox_checks import same_frames_without_pixels

GREY = np.float32(114) / np.float32(255)


def test_wide_image_is_centred_vertically_with_grey_bars():
    image = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    out, t = letterbox_reference(image, 4)
    assert t == LetterboxTransform(4, 2, 4, 1.0, 4, 2, 0, 1)
    assert out.shape == (3, 4, 4) and out.dtype == np.float32
    assert np.array_equal(out[:, 1:3, :], image.transpose(2, 0, 1).astype(np.float32) / np.float32(255))
    assert np.all(out[:, 0, :] == GREY) and np.all(out[:, 3, :] == GREY)


def test_halving_averages_two_by_two_blocks():
    """cv2.INTER_LINEAR at exactly 1/2 samples between four pixels: their rounded mean."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out, t = letterbox_reference(image, 4)
    assert (t.resized_width, t.resized_height, t.pad_x, t.pad_y) == (4, 4, 0, 0)
    blocks = image.reshape(4, 2, 4, 2, 3).astype(np.float64).mean(axis=(1, 3))
    expected = np.floor(blocks + 0.5).transpose(2, 0, 1) / 255
    assert np.abs(out - expected).max() <= 1e-6


def test_portrait_image_is_centred_horizontally():
    image = np.full((640, 480, 3), 200, np.uint8)
    out, t = letterbox_reference(image, 416)
    assert (t.resized_width, t.resized_height, t.pad_x, t.pad_y) == (312, 416, 52, 0)
    assert np.all(out[:, :, :52] == GREY) and np.all(out[:, :, 52 + 312:] == GREY)
    assert np.all(out[:, :, 52:52 + 312] == np.float32(200) / np.float32(255))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_reference_preprocessor_stacks_the_reference(make_frame, dtype):
    frames = [make_frame(1280, 720, "a"), make_frame(480, 640, "b"), make_frame(333, 211, "c")]
    with ReferencePreprocessor(416, dtype, max_batch=4) as pre:
        out = pre(FrameBatch(tuple(frames), formed_at=3.0, oldest_wait_s=0.0))
    assert same_frames_without_pixels(out.frames, frames) and out.formed_at == 3.0
    assert out.tensor.shape == (3, 3, 416, 416) and out.tensor.dtype == dtype
    for i, f in enumerate(frames):
        ref, t = letterbox_reference(f.image, 416)
        assert out.transforms[i] == t
        assert np.array_equal(out.tensor[i], ref.astype(dtype))


def test_reference_preprocessor_rejects_bad_frames_alone(make_frame):
    rejected = []
    good = make_frame(640, 480)
    bad = Frame("bad", 9, None, 0.0, 640, 480, np.zeros((480, 640, 4), np.uint8))
    with ReferencePreprocessor(64, np.float32, 2, on_reject=lambda f, why: rejected.append((f, why))) as pre:
        out = pre(FrameBatch((bad, good), 0.0, 0.0))
    assert same_frames_without_pixels(out.frames, [good]) and out.tensor.shape == (1, 3, 64, 64)
    assert rejected == [(bad, "image shape (480, 640, 4) is not HxWx3")]
