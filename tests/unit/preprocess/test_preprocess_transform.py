"""LetterboxTransform: fit() geometry, and to_source() undoing the letterbox for boxes.

The picture in the model input is the source stretched by resized/src per axis (rounded sizes), so
that is what to_source inverts, to float precision. The nominal `scale` differs from it by the
rounding of the resized size: mapping with scale+pad and back is off by at most half a model-input
pixel (<= 1 source pixel while the resize factor is >= 1/2).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.frame import LetterboxTransform


@pytest.mark.parametrize("src, size, expected", [
    ((1280, 720), 640, (640, 360, 0, 140)),
    ((1280, 720), 416, (416, 234, 0, 91)),
    ((768, 576), 416, (416, 312, 0, 52)),
    ((640, 480), 640, (640, 480, 0, 80)),
    ((480, 640), 416, (312, 416, 52, 0)),
    ((1001, 999), 416, (416, 415, 0, 0)),
    ((100, 5000), 320, (6, 320, 157, 0)),
])
def test_fit(src, size, expected):
    t = LetterboxTransform.fit(*src, size)
    assert (t.resized_width, t.resized_height, t.pad_x, t.pad_y) == expected
    assert t.scale == min(size / src[0], size / src[1])


def test_to_source_maps_model_corners_of_the_picture_to_source_corners():
    t = LetterboxTransform.fit(1280, 720, 640)
    model = np.array([[0, 140, 640, 500], [320, 320, 320, 320], [-5, 0, 700, 640]], np.float32)
    src = t.to_source(model)
    assert np.allclose(src[0], [0, 0, 1280, 720])
    assert np.allclose(src[1], [640, 360, 640, 360])
    assert np.allclose(src[2], [0, 0, 1280, 720])  # outside the picture: clipped to the frame


@st.composite
def frame_and_box(draw):
    w = draw(st.integers(16, 4096))
    h = draw(st.integers(16, 4096))
    size = 32 * draw(st.integers(1, 40))
    xs = sorted(draw(st.floats(0, w, allow_nan=False)) for _ in range(2))
    ys = sorted(draw(st.floats(0, h, allow_nan=False)) for _ in range(2))
    return LetterboxTransform.fit(w, h, size), np.array([[xs[0], ys[0], xs[1], ys[1]]], np.float64)


@settings(max_examples=300, deadline=None)
@given(frame_and_box())
def test_to_source_inverts_the_letterbox_exactly(case):
    t, box = case
    sx, sy = t.resized_width / t.src_width, t.resized_height / t.src_height
    model = box * [sx, sy, sx, sy] + [t.pad_x, t.pad_y, t.pad_x, t.pad_y]
    back = t.to_source(model)
    assert np.abs(back - box).max() <= 1e-6 * max(t.src_width, t.src_height) + 1e-3


@settings(max_examples=300, deadline=None)
@given(frame_and_box())
def test_scale_and_pad_round_trip_within_half_a_model_pixel(case):
    t, box = case
    model = box * t.scale + [t.pad_x, t.pad_y, t.pad_x, t.pad_y]
    error = np.abs(t.to_source(model) - box).max()
    assert error * t.scale <= 0.5 + 1e-3  # in model-input pixels
    # per axis the resize factor is resized/src; where both are >= 1/2 that is <= 1 source pixel
    factor = min(t.resized_width / t.src_width, t.resized_height / t.src_height)
    if factor >= 0.5 and min(t.resized_width, t.resized_height) > 1:
        assert error <= 1.0 + 1e-3
