"""DaliLetterbox on the GPU (needs a CUDA device and CuPy; skipped elsewhere).

Device frames (CuPy arrays, i.e. __cuda_array_interface__) of mixed resolutions go in; a
DaliDeviceTensor comes out and is compared, copied to the host, with the OpenCV reference under
the same tolerance as the cpu variant.
"""
from __future__ import annotations


import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
dali_backend = pytest.importorskip("nvidia.dali.backend")
if dali_backend.GetCUDADeviceCount() == 0:
    pytest.skip("no CUDA device", allow_module_level=True)

from pipeline.frame import Frame, FrameBatch, LetterboxTransform  # noqa: E402
from pipeline.preprocess import create_preprocessor  # noqa: E402
from pipeline.preprocess.dali import DaliDeviceTensor  # noqa: E402


from tests.support.letterbox_checks import assert_matches_reference  # noqa: E402
SIZES = [(1280, 720), (768, 576), (640, 480), (480, 640), (333, 211), (1001, 999)]


def host_frame(w: int, h: int, i: int) -> Frame:
    rng = np.random.default_rng(i)
    coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    image = np.repeat(np.repeat(coarse, 8, 0), 8, 1)[:h, :w]
    image = np.clip(image.astype(np.int16) + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
    return Frame(f"cam{i}", i, None, 0.0, w, h, np.ascontiguousarray(image))


def on_device(frame: Frame) -> Frame:
    return Frame(frame.camera_id, frame.index, frame.pts, frame.captured_at, frame.width, frame.height,
                 cupy.asarray(frame.image))


def check(out, host_frames: list[Frame], size: int, dtype) -> None:
    assert isinstance(out.tensor, DaliDeviceTensor)
    assert out.tensor.shape == (len(host_frames), 3, size, size)
    assert out.tensor.dtype == dtype
    cai = out.tensor.__cuda_array_interface__
    assert cai["data"][0] == out.tensor.data_ptr
    host = cupy.asarray(out.tensor).get()
    assert out.transforms == tuple(LetterboxTransform.fit(f.width, f.height, size) for f in host_frames)
    for i, (f, t) in enumerate(zip(host_frames, out.transforms)):
        assert_matches_reference(host[i], f.image, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_device_frames_mixed_sizes(dtype):
    frames = [host_frame(w, h, i) for i, (w, h) in enumerate(SIZES)]
    with create_preprocessor("gpu", 416, dtype, 8, 2) as pre:
        out = pre(FrameBatch(tuple(on_device(f) for f in frames), 0.0, 0.0))
        check(out, frames, 416, dtype)
        assert np.array_equal(cupy.from_dlpack(out.tensor).get(), cupy.asarray(out.tensor).get())


def test_batch_sizes_change_and_earlier_outputs_survive():
    with create_preprocessor("gpu", 640, np.float16, 8, 2) as pre:
        kept = []
        for n in (1, 8, 3, 8, 2):
            frames = [host_frame(*SIZES[(n + i) % len(SIZES)], i) for i in range(n)]
            out = pre(FrameBatch(tuple(on_device(f) for f in frames), 0.0, 0.0))
            check(out, frames, 640, np.float16)
            kept.append((out.tensor, cupy.asarray(out.tensor).get()))
        for tensor, snapshot in kept:
            assert np.array_equal(cupy.asarray(tensor).get(), snapshot)


def test_host_frames_on_the_gpu_path():
    frames = [host_frame(w, h, i) for i, (w, h) in enumerate(SIZES[:4])]
    with create_preprocessor("gpu", 416, np.float32, 4, 2) as pre:
        check(pre(FrameBatch(tuple(frames), 0.0, 0.0)), frames, 416, np.float32)


def test_mixed_host_and_device_batch_uploads_the_host_frames():
    # a camera whose NVDEC decode fell back to the CPU shares batches with NVDEC cameras
    rejected = []
    frames = [host_frame(640, 480, 0), host_frame(1280, 720, 1), host_frame(333, 211, 2)]
    batch = FrameBatch((on_device(frames[0]), frames[1], on_device(frames[2])), 0.0, 0.0)
    with create_preprocessor("gpu", 416, np.float32, 4, 2,
                             on_reject=lambda f, why: rejected.append((f.camera_id, why))) as pre:
        check(pre(batch), frames, 416, np.float32)
        check(pre(FrameBatch((frames[1], on_device(frames[0])), 0.0, 0.0)), [frames[1], frames[0]], 416, np.float32)
    assert rejected == []


def test_output_lives_in_device_memory():
    from pipeline.gpu.memory import memory_type

    frames = [host_frame(1280, 720, 0), host_frame(640, 480, 1)]
    with create_preprocessor("gpu", 640, np.float16, 2, 2) as pre:
        out = pre(FrameBatch(tuple(on_device(f) for f in frames), 0.0, 0.0))
        assert not hasattr(out.tensor, "__array_interface__")
        assert memory_type(out.tensor.data_ptr) == "device"


def test_onnxruntime_cuda_io_binding_reads_the_device_tensor():
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA execution provider here")
    from tests.support.tiny_model import image_means_via_io_binding

    frames = [host_frame(1280, 720, 0), host_frame(480, 640, 1)]
    with create_preprocessor("gpu", 416, np.float32, 2, 2) as pre:
        out = pre(FrameBatch(tuple(on_device(f) for f in frames), 0.0, 0.0))
        means = image_means_via_io_binding(ort, out.tensor)
        expected = cupy.asarray(out.tensor).get().mean(axis=(1, 2, 3))
    assert np.allclose(means, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["nhwc", "bgr", "uint8-nhwc-bgr", "imagenet-fp16", "minus1-plus1", "stretch-pad0"])
def test_input_conventions_on_the_gpu_match_the_reference(name):
    """model.input options (docs/models.md) in the GPU graph, against the numpy reference; same tolerance
    as tests/unit/preprocess/test_preprocess_conventions.py on the cpu. Not yet run on a GPU."""
    from pipeline.preprocess import ReferencePreprocessor
    from tests.unit.preprocess.test_preprocess_conventions import CASES

    convention, dtype = CASES[name]
    frames = [host_frame(w, h, i) for i, (w, h) in enumerate(SIZES[:4])]
    with create_preprocessor("gpu", 96, dtype, 8, 2, convention=convention) as pre:
        out = pre(FrameBatch(tuple(on_device(f) for f in frames), 0.0, 0.0))
    ref = ReferencePreprocessor(96, dtype, 8, convention=convention)(FrameBatch(tuple(frames), 0.0, 0.0))
    host = cupy.asarray(out.tensor).get()
    assert host.shape == ref.tensor.shape and host.dtype == ref.tensor.dtype and out.transforms == ref.transforms
    one_grey = (1.0 if dtype == np.uint8 else convention.scale / min(convention.std)) * 1.001
    tol = one_grey + (2e-3 * np.abs(ref.tensor.astype(np.float32)).max() if dtype == np.float16 else 0)
    assert np.abs(host.astype(np.float32) - ref.tensor.astype(np.float32)).max() <= tol
