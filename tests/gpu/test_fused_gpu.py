"""The fused letterbox kernel (preprocess.kernel: fused) against DALI and the numpy reference.

Pictures: smooth random RGB at odd and large sizes (1279x719, 3840x2160, 640x480), turned into NV12
with each colour matrix and range (rgb_to_nv12_reference), uploaded as NV12 device surfaces. The
truth is letterbox_reference(nv12_to_rgb_reference(nv12)): the fused kernel must match it under
DaliLetterbox's own tolerance, and so must DALI fed with the same RGB; fused and DALI then agree
within the two tolerances. NVDEC's own NV12 output is checked against PyAV's CPU decoding.
"""
from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.gpu_env import skip_module_without_gpu

skip_module_without_gpu("cupy")

import cupy  # noqa: E402

from pipeline.frame import Frame, FrameBatch, LetterboxTransform  # noqa: E402
from pipeline.gpu.memory import DeviceBufferPool, memory_type  # noqa: E402
from pipeline.gpu.nv12 import DeviceNV12Image, upload_nv12  # noqa: E402
from pipeline.preprocess import create_preprocessor  # noqa: E402
from pipeline.preprocess.fused import FusedDeviceTensor  # noqa: E402
from pipeline.preprocess.reference import (letterbox_reference, nv12_to_rgb_reference,  # noqa: E402
                                           rgb_to_nv12_reference)
from tests.support.letterbox_checks import FP16_EXTRA, MAX_DIFF, MEAN_DIFF, assert_matches_reference  # noqa: E402

SIZES = [(1279, 719), (3840, 2160), (640, 480)]
COLOURS = [("bt601", False), ("bt601", True), ("bt709", False), ("bt709", True)]


def smooth_rgb(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(image.astype(np.int16) + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def nv12_and_truth(w: int, h: int, seed: int, matrix: str, full_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """(NV12 of a smooth picture, its numpy RGB conversion); cached: fp32 and fp16 share them."""
    nv12 = rgb_to_nv12_reference(smooth_rgb(w, h, seed), matrix, full_range)
    return nv12, nv12_to_rgb_reference(nv12, w, h, matrix, full_range)


def frame(image, w: int, h: int, i: int) -> Frame:
    return Frame(f"cam{i}", i, None, 0.0, w, h, image)


@pytest.fixture(scope="module")
def pool():
    p = DeviceBufferPool(0)
    yield p
    p.close()


def fused_nv12_batch(pool, matrix: str, full_range: bool, dtype) -> tuple[list, object, np.ndarray]:
    """The odd sizes as NV12 device pictures through the fused kernel: (RGB truths, output, host copy)."""
    rgbs, frames = [], []
    for i, (w, h) in enumerate(SIZES):
        nv12, truth = nv12_and_truth(w, h, i, matrix, full_range)
        rgbs.append(truth)  # the input of the truth (and of DALI)
        frames.append(frame(upload_nv12(pool, nv12, w, h, matrix, full_range), w, h, i))
    with create_preprocessor("gpu", 640, dtype, 4, kernel="fused") as fused:
        out = fused(FrameBatch(tuple(frames), 0.0, 0.0))
        assert isinstance(out.tensor, FusedDeviceTensor)
        assert out.tensor.shape == (3, 3, 640, 640) and out.tensor.dtype == dtype
        assert memory_type(out.tensor.data_ptr) == "device"
        got = cupy.asarray(out.tensor).get()
    assert out.transforms == tuple(LetterboxTransform.fit(w, h, 640) for w, h in SIZES)
    return rgbs, out, got


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("matrix,full_range", COLOURS)
def test_fused_nv12_matches_numpy(pool, matrix, full_range, dtype):
    rgbs, out, got = fused_nv12_batch(pool, matrix, full_range, dtype)
    for i, t in enumerate(out.transforms):
        assert_matches_reference(got[i], rgbs[i], t)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("matrix,full_range", COLOURS)
def test_fused_nv12_and_dali_agree(pool, matrix, full_range, dtype):
    pytest.importorskip("nvidia.dali")  # the reference path; the numpy comparison above needs no DALI
    rgbs, out, got = fused_nv12_batch(pool, matrix, full_range, dtype)
    with create_preprocessor("gpu", 640, dtype, 4, 2, kernel="dali") as dali:
        ref_out = dali(FrameBatch(tuple(frame(cupy.asarray(rgb), *s, i) for i, (rgb, s) in
                                        enumerate(zip(rgbs, SIZES))), 0.0, 0.0))
        via_dali = cupy.asarray(ref_out.tensor).get()
    for i, t in enumerate(out.transforms):
        assert_matches_reference(via_dali[i], rgbs[i], t)
        diff = np.abs(got[i].astype(np.float64) - via_dali[i].astype(np.float64))
        extra = FP16_EXTRA if dtype == np.float16 else 0.0
        assert diff.max() <= 2 * (MAX_DIFF + extra), f"fused vs DALI max {diff.max() * 255:.3f}/255"
        assert diff.mean() <= MEAN_DIFF, f"fused vs DALI mean {diff.mean() * 255:.3f}/255"


def test_mixed_batch_nv12_rgb_device_and_host_frames_and_outputs_survive(pool):
    """A camera whose NVDEC fell back to the CPU (host RGB), one on NVDEC's RGB output (device RGB)
    and NV12 cameras share batches; earlier outputs keep their values while later batches run."""
    kept = []
    with create_preprocessor("gpu", 416, np.float32, 8, kernel="fused") as fused:
        for n in (3, 8, 1, 5):
            frames, truths = [], []
            for i in range(n):
                w, h = [(1279, 719), (333, 211), (640, 480), (480, 640)][(n + i) % 4]
                rgb = smooth_rgb(w, h, 10 * n + i)
                kind = (n + i) % 3
                if kind == 0:
                    nv12 = rgb_to_nv12_reference(rgb, "bt709", False)
                    image, truth = upload_nv12(pool, nv12, w, h, "bt709", False), nv12_to_rgb_reference(nv12, w, h, "bt709")
                elif kind == 1:
                    image, truth = cupy.asarray(rgb), rgb
                else:
                    image, truth = rgb, rgb
                frames.append(frame(image, w, h, i))
                truths.append(truth)
            out = fused(FrameBatch(tuple(frames), 0.0, 0.0))
            host = cupy.asarray(out.tensor).get()
            for i, t in enumerate(out.transforms):
                assert_matches_reference(host[i], truths[i], t)
            kept.append((out.tensor, host))
        for tensor, snapshot in kept:
            assert np.array_equal(cupy.asarray(tensor).get(), snapshot)


def test_dali_rejects_nv12_frames_one_by_one(pool):
    pytest.importorskip("nvidia.dali")
    rejected = []
    nv12 = rgb_to_nv12_reference(smooth_rgb(64, 48, 0))
    frames = (frame(upload_nv12(pool, nv12, 64, 48), 64, 48, 0), frame(cupy.asarray(smooth_rgb(64, 48, 1)), 64, 48, 1))
    with create_preprocessor("gpu", 64, np.float32, 2, 2, kernel="dali",
                             on_reject=lambda f, why: rejected.append((f.camera_id, why))) as dali:
        out = dali(FrameBatch(frames, 0.0, 0.0))
    assert [f.camera_id for f in out.frames] == ["cam1"]
    assert rejected and rejected[0][0] == "cam0" and "NV12" in rejected[0][1]


def test_onnxruntime_io_binding_reads_the_fused_tensor(pool):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA execution provider here")
    from tests.support.tiny_model import image_means_via_io_binding

    nv12 = rgb_to_nv12_reference(smooth_rgb(1279, 719, 3))
    with create_preprocessor("gpu", 320, np.float32, 2, kernel="fused") as fused:  # an fp16 mean overflows
        t = fused(FrameBatch((frame(upload_nv12(pool, nv12, 1279, 719), 1279, 719, 0),), 0.0, 0.0)).tensor
        mean = image_means_via_io_binding(ort, t)
        expected = cupy.asarray(t).get().mean(axis=(1, 2, 3))
    assert np.allclose(mean, expected, atol=1e-5)


@pytest.mark.parametrize("size", [(640, 360), (1920, 1080)])
def test_nvdec_nv12_frames_convert_like_the_cpu_decode(tmp_path: Path, size):
    """decode.nvdec_output nv12: NVDEC's surfaces (plane geometry as PyNvVideoCodec reports it)
    converted by the numpy reference and by the fused kernel equal PyAV's CPU frames within the
    NVDEC tests' colour tolerance."""
    pytest.importorskip("PyNvVideoCodec")
    from pipeline.config import CameraConfig, DecodeConfig
    from pipeline.frame import CameraState
    from tests.support.media import make_clip
    from tests.support.source_runner import SourceRunner

    w, h = size
    clip = make_clip(tmp_path / "c.mp4", w, h, 12)
    runs = {}
    for name, decode in (("nv12", DecodeConfig(device="gpu", nvdec_output="nv12")), ("cpu", DecodeConfig())):
        runner = SourceRunner(CameraConfig(id=name, url=str(clip), realtime=False), decode=decode).start()
        runner.join(60.0)
        assert runner.states()[-1] is CameraState.EOF, runner.events
        runs[name] = runner.frames
    assert [f.index for f in runs["nv12"]] == [f.index for f in runs["cpu"]]
    assert all(isinstance(f.image, DeviceNV12Image) for f in runs["nv12"])
    with create_preprocessor("gpu", 640, np.float32, 4, kernel="fused") as fused:
        for g, c in zip(runs["nv12"], runs["cpu"]):
            img = g.image
            assert (img.width, img.height, img.matrix, img.full_range) == (w, h, "bt601", False)
            rgb = nv12_to_rgb_reference(img.to_host(), w, h, img.matrix, img.full_range)
            d = np.abs(rgb.astype(np.int16) - c.image.astype(np.int16))
            assert d.mean() <= 2.0 and np.percentile(d, 99) <= 16, (d.mean(), np.percentile(d, 99))
            out = cupy.asarray(fused(FrameBatch((g,), 0.0, 0.0)).tensor).get()[0]
            ref = letterbox_reference(c.image, 640)[0]
            assert np.abs(out - ref).mean() <= 2.0 / 255
