"""Every model.input option (InputConvention) in DALI on the cpu against the numpy reference: NHWC,
BGR, uint8 and float16 outputs, scale/mean/std, stretch, another pad value. Geometry and padding are
exact (up to float rounding of the fill value); inside the picture values differ by at most one grey level (cv2 vs DALI resize rounding) in
output units."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.frame import Frame, FrameBatch
from pipeline.preprocess import InputConvention, ReferencePreprocessor, letterbox_reference
from pipeline.preprocess.dali import DaliLetterbox

SIZE = 96
IMAGENET = dict(scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

CASES = {
    "nhwc": (InputConvention(layout="NHWC"), np.float32),
    "bgr": (InputConvention(channels="BGR"), np.float32),
    "uint8-nhwc-bgr": (InputConvention(layout="NHWC", channels="BGR", scale=1.0), np.uint8),
    "imagenet-fp16": (InputConvention(**IMAGENET), np.float16),
    "minus1-plus1": (InputConvention(scale=1 / 127.5, mean=(1.0, 1.0, 1.0)), np.float32),
    "stretch-pad0": (InputConvention(resize="stretch", pad_value=0), np.float32),
    "letterbox-pad0": (InputConvention(pad_value=0), np.float32),
}


def frame_of(image: np.ndarray, index: int = 0) -> Frame:
    h, w = image.shape[:2]
    return Frame(camera_id="c", index=index, pts=None, captured_at=0.0, width=w, height=h, image=image)


@pytest.fixture(scope="module")
def images(street_scene: np.ndarray) -> list[np.ndarray]:
    tall = np.ascontiguousarray(street_scene[:, :300])
    return [street_scene, tall]


@pytest.mark.parametrize("name", sorted(CASES))
def test_dali_matches_reference_for_every_input_option(images: list[np.ndarray], name: str) -> None:
    convention, dtype = CASES[name]
    frames = [frame_of(im, i) for i, im in enumerate(images)]
    batch = FrameBatch(frames=tuple(frames), formed_at=0.0, oldest_wait_s=0.0)
    with DaliLetterbox("cpu", SIZE, dtype, 4, num_threads=1, convention=convention) as dali:
        out = dali(batch)
    ref = ReferencePreprocessor(SIZE, dtype, 4, convention=convention)(batch)
    assert out.tensor.shape == ref.tensor.shape == convention.shape(2, SIZE)
    assert out.tensor.dtype == ref.tensor.dtype == np.dtype(dtype)
    assert out.transforms == ref.transforms
    one_grey = (1.0 if dtype == np.uint8 else convention.scale / min(convention.std)) * 1.001
    diff = np.abs(out.tensor.astype(np.float32) - ref.tensor.astype(np.float32))
    tol = one_grey + (2e-3 * np.abs(ref.tensor.astype(np.float32)).max() if dtype == np.float16 else 0)
    assert diff.max() <= tol, f"{name}: max difference {diff.max()} > {tol}"
    for i, t in enumerate(ref.transforms):  # padding: exact up to float rounding of the fill value
        if t.pad_y:
            a, b = out.tensor[i], ref.tensor[i]
            rows = (slice(None), slice(0, t.pad_y)) if convention.layout == "NCHW" else (slice(0, t.pad_y),)
            np.testing.assert_allclose(a[rows].astype(np.float32), b[rows].astype(np.float32), rtol=1e-6,
                                       atol=1e-6)


def test_reference_options_do_what_they_say(street_scene: np.ndarray) -> None:
    base, t = letterbox_reference(street_scene, SIZE)  # NCHW RGB 0..1 letterbox 114
    assert t.pad_y > 0 and base[0, 0, 0] == np.float32(114 / 255)
    bgr, _ = letterbox_reference(street_scene, SIZE, InputConvention(channels="BGR"))
    np.testing.assert_array_equal(bgr, base[::-1])
    nhwc, _ = letterbox_reference(street_scene, SIZE, InputConvention(layout="NHWC"))
    np.testing.assert_array_equal(nhwc, base.transpose(1, 2, 0))
    raw, _ = letterbox_reference(street_scene, SIZE, InputConvention(scale=1.0), np.uint8)
    np.testing.assert_array_equal(raw.astype(np.float32) / 255, base)
    norm, _ = letterbox_reference(street_scene, SIZE, InputConvention(**IMAGENET))
    mean, std = np.float32(IMAGENET["mean"])[:, None, None], np.float32(IMAGENET["std"])[:, None, None]
    np.testing.assert_allclose(norm, (base - mean) / std, atol=1e-5)
    stretched, ts = letterbox_reference(street_scene, SIZE, InputConvention(resize="stretch"))
    assert (ts.pad_x, ts.pad_y, ts.resized_width, ts.resized_height) == (0, 0, SIZE, SIZE)
    h, w = street_scene.shape[:2]
    box = ts.to_source(np.array([[0, 0, SIZE, SIZE]], np.float32))
    np.testing.assert_allclose(box[0], [0, 0, w, h], atol=1e-3)
