"""NV12 on the CPU side: the numpy reference conversion the fused GPU kernel is tested against,
how NV12 surfaces are described (pipeline/gpu/nv12.py), which preprocessors take them, and the
fused kernel's CUDA source compiling under NVRTC (no GPU needed to compile)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.frame import Frame
from pipeline.gpu.nv12 import DeviceNV12View, is_nv12, nv12_pitch, nv12_rows
from pipeline.preprocess.base import frame_problem, image_size
from pipeline.preprocess.reference import nv12_to_rgb_reference, rgb_to_nv12_reference


def smooth_rgb(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (9, 9), 3)


def test_bt601_limited_matches_opencv() -> None:
    rgb = smooth_rgb(640, 480)
    nv12 = rgb_to_nv12_reference(rgb, "bt601", False)
    ours = nv12_to_rgb_reference(nv12, 640, 480, "bt601", False).astype(np.int16)
    theirs = cv2.cvtColor(nv12, cv2.COLOR_YUV2RGB_NV12).astype(np.int16)
    assert np.abs(ours - theirs).max() <= 1
    assert np.abs(ours - theirs).mean() < 0.1


@pytest.mark.parametrize("w,h", [(1279, 719), (640, 480), (7, 5)])
@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("full_range", [False, True])
def test_round_trip_odd_sizes(w: int, h: int, matrix: str, full_range: bool) -> None:
    rgb = smooth_rgb(w, h, w)
    nv12 = rgb_to_nv12_reference(rgb, matrix, full_range)
    assert nv12.shape == (nv12_rows(h), nv12_pitch(w))
    back = nv12_to_rgb_reference(nv12, w, h, matrix, full_range)
    assert back.shape == (h, w, 3) and back.dtype == np.uint8
    diff = np.abs(back.astype(np.int16) - rgb)
    assert diff.mean() < 2.0  # chroma is subsampled 2x2, so single pixels differ more


def test_the_matrix_and_range_matter() -> None:
    saturated = np.repeat(np.repeat(np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8), 2, 0), 2, 1)
    nv12 = rgb_to_nv12_reference(saturated, "bt601", False)
    a = nv12_to_rgb_reference(nv12, 64, 48, "bt601", False).astype(np.int16)
    assert np.abs(a - nv12_to_rgb_reference(nv12, 64, 48, "bt709", False)).mean() > 3.0
    assert np.abs(a - nv12_to_rgb_reference(nv12, 64, 48, "bt601", True)).mean() > 3.0


def test_nv12_view_geometry_and_who_takes_it() -> None:
    view = DeviceNV12View(0, 0x10000, 1279, 719, 1280, "bt709", True)
    assert is_nv12(view) and view.shape == (719 + 360, 1280)
    assert view.chroma_ptr == 0x10000 + 719 * 1280
    assert image_size(view) == (1279, 719)
    frame = Frame("c", 0, None, 0.0, 1279, 719, view)
    assert frame_problem(frame, allow_device=True, allow_nv12=True) is None
    assert "NV12" in frame_problem(frame, allow_device=True)
    assert "1279x719 but the frame says 640x480" in frame_problem(
        Frame("c", 0, None, 0.0, 640, 480, view), allow_device=True, allow_nv12=True)
    with pytest.raises(ValueError, match="pitch 1278"):
        DeviceNV12View(0, 0x10000, 1279, 719, 1278)
    with pytest.raises(ValueError, match="colour matrix"):
        DeviceNV12View(0, 0x10000, 64, 48, 64, "bt2020")


def test_fused_kernel_compiles_with_nvrtc() -> None:
    try:
        from cuda.bindings import nvrtc

        err, _ = nvrtc.nvrtcVersion()
        assert int(err) == 0
    except Exception as exc:  # noqa: BLE001 - no cuda-python or no libnvrtc on this box
        pytest.skip(f"NVRTC is not usable here: {exc}")
    from pipeline.preprocess.fused import FRAME_PARAMS, _kernel_source, compile_cuda

    assert FRAME_PARAMS.itemsize == 64  # the kernel's struct FrameParams: 2 pointers, 12 ints
    cubin = compile_cuda(_kernel_source(), 9, 0)
    assert cubin[:4] == b"\x7fELF"


def test_fused_without_a_gpu_is_a_one_line_error() -> None:
    from tests.support.gpu_env import gpu_skip_reason

    if gpu_skip_reason() is None:
        pytest.skip("a GPU is here")
    from pipeline.preprocess import PreprocessError, create_preprocessor

    with pytest.raises((PreprocessError, ImportError)) as err:
        create_preprocessor("gpu", 640, np.float16, 4, kernel="fused")
    assert "\n" not in str(err.value) and str(err.value)
