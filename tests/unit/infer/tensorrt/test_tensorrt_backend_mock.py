"""TensorRtBackend execution path against the MOCK TensorRT and CUDA runtimes in mock_tensorrt.py.

Nothing can execute TensorRT here (see mock_tensorrt's docstring), so what these tests prove is
the backend's own plumbing: cache hit at start-up, tensors bound by name, one profile and stream
per context, chunks spread over contexts and left in flight together, buffers allocated once,
host staging vs. binding a GPU buffer in place, outputs copied back only after the stream is
synchronized, and full cleanup. The numbers come from running the real tiny ONNX model with
onnxruntime inside the fake engine, compared with the numpy reference.

Most tests run with model.max_candidates: null (the engine returns the full [B, 4+C, N] output);
the candidates tests seed a plan naming the candidates model that prepare_engine writes, as a
real build would parse it, and check the backend returns [B, 6, K] in the CANDIDATES layout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ModelConfig, TensorRtConfig
from pipeline.frame import Frame, LetterboxTransform, OutputLayout, TensorBatch
from pipeline.infer.tensorrt.backend import TensorRtBackend
from pipeline.infer.tensorrt.cuda import gpu_identity
from pipeline.infer.tensorrt.engine import engine_target
from pipeline.infer.tensorrt.engine_cache import EngineCache
from tests.support.tiny_model import INPUT_NAME, build_tiny_yolo_onnx, tiny_yolo_reference
from tests.support.model_families import build_tiny_yolox_onnx
from tests.support.mock_tensorrt import FakeCudaRuntime, FakeTensorRt, fake_plan

SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_yolo_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx", input_size=SIZE)


def model_config(path: Path, cache: Path, contexts: int = 2, labels: tuple[str, ...] = ("a", "b"),
                 max_candidates: int | None = None) -> ModelConfig:
    return ModelConfig(path=path, labels=list(labels), input_size=SIZE, backend="tensorrt", engine_cache_dir=cache,
                       tensorrt=TensorRtConfig(contexts=contexts), max_candidates=max_candidates)


def seeded(tmp_path: Path, onnx: Path, max_batch: int = 4, contexts: int = 2, dtype: str = "float32",
           labels: tuple[str, ...] = ("a", "b"), max_candidates: int | None = None
           ) -> tuple[ModelConfig, FakeCudaRuntime, FakeTensorRt]:
    """A model config whose engine cache already holds a (fake) plan for the fake GPU, under the key
    prepare_engine computes; the plan names the file a real build would parse (the candidates model
    when max_candidates is set)."""
    rt = FakeCudaRuntime()
    trt = FakeTensorRt(rt)
    model = model_config(onnx, tmp_path / "engines", contexts, labels, max_candidates)
    target = engine_target(trt.__version__, model, max_batch, gpu_identity(rt, 0))
    plan = fake_plan(str(target.request.network_path), INPUT_NAME, (1, max(1, max_batch // 2), max_batch), contexts,
                     SIZE, dtype)
    target.cache.store(onnx.stem, target.spec, plan)
    return model, rt, trt


def batch_of(images: np.ndarray | object, count: int) -> TensorBatch:
    frames = tuple(Frame(f"cam{i}", i, None, 0.0, SIZE, SIZE, None) for i in range(count))
    transforms = tuple(LetterboxTransform.fit(SIZE, SIZE, SIZE) for _ in range(count))
    return TensorBatch(frames, transforms, images, 0.0)


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 3, SIZE, SIZE), dtype=np.float32)


def test_starts_from_the_cache_and_reports_its_io(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    with TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt) as be:
        assert not be.prepared.built and be.prepared.first_lookup.status == "hit"
        assert (be.input_name, be.input_size, be.input_dtype, be.max_batch, be.num_classes, be.contexts) == \
            (INPUT_NAME, SIZE, np.dtype(np.float32), 4, 2, 2)
        assert be.output_layout is OutputLayout.ANCHORS  # max_candidates: null


def test_host_batch_matches_the_reference(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    x = images(3)
    with TensorRtBackend(model, 4, "cpu", trt_module=trt, cuda_runtime=rt) as be:
        out = be.infer(batch_of(x, 3)).output
    np.testing.assert_allclose(out, tiny_yolo_reference(x), rtol=1e-5, atol=1e-6)
    assert out.dtype == np.float32 and out.shape == (3, 6, (SIZE // 8) ** 2)


def test_each_context_has_its_own_profile_and_stream(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny, contexts=3)
    with TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt) as be:
        engine = trt.engines[0]
        assert [c.profile for c in engine.contexts] == [0, 1, 2]
        assert be.contexts == 3 and len(rt.streams) == 3


def test_large_batch_is_split_over_contexts_that_run_together(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny, max_batch=4)
    x = images(10, seed=1)
    with TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt) as be:
        out = be.infer(batch_of(x, 10)).output
        executions = [c.executions for c in trt.engines[0].contexts]
    np.testing.assert_allclose(out, tiny_yolo_reference(x), rtol=1e-5, atol=1e-6)
    assert executions == [2, 1]  # chunks 4, 4, 2 went round the two contexts
    assert rt.max_streams_busy == 2  # both contexts had work in flight at the same time


def test_consecutive_batches_overlap_when_submitted(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    a, b = images(2, seed=2), images(3, seed=3)
    with TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt) as be:
        first = be.submit(batch_of(a, 2))
        second = be.submit(batch_of(b, 3))
        assert rt.max_streams_busy == 2  # the second batch was enqueued before the first finished
        out_b, out_a = second.result().output, first.result().output  # any collection order
    np.testing.assert_allclose(out_a, tiny_yolo_reference(a), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_b, tiny_yolo_reference(b), rtol=1e-5, atol=1e-6)


def test_more_submissions_than_contexts_wait_for_the_oldest(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    xs = [images(1 + i % 4, seed=10 + i) for i in range(5)]
    with TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt) as be:
        pending = [be.submit(batch_of(x, len(x))) for x in xs]
        outs = [p.result().output for p in pending]
    for x, out in zip(xs, outs):
        np.testing.assert_allclose(out, tiny_yolo_reference(x), rtol=1e-5, atol=1e-6)


def test_device_buffers_are_allocated_once(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    with TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt) as be:
        mallocs = rt.count("cudaMalloc") + rt.count("cudaMallocHost")
        assert rt.count("cudaMalloc") == 2 * 2  # per context: input + output, at max batch
        for i in range(6):
            be.infer(batch_of(images(1 + i % 4, seed=i), 1 + i % 4))
        assert rt.count("cudaMalloc") + rt.count("cudaMallocHost") == mallocs
    input_bytes = 4 * 3 * SIZE * SIZE * 4
    assert ("cudaMalloc", input_bytes) in rt.calls


def test_gpu_input_is_bound_in_place_without_a_copy(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny, max_batch=4)
    x = images(6, seed=4)
    device = rt.device_array(x)
    with TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt) as be:
        uploads_before = [k for name, k in rt.calls if name == "cudaMemcpyAsync"].count(1)
        out = be.infer(batch_of(device, 6)).output
        uploads_after = [k for name, k in rt.calls if name == "cudaMemcpyAsync"].count(1)
        bound = sorted(c.addresses[INPUT_NAME] for c in trt.engines[0].contexts)
    np.testing.assert_allclose(out, tiny_yolo_reference(x), rtol=1e-5, atol=1e-6)
    assert uploads_after == uploads_before  # no host-to-device copy for a GPU tensor
    assert bound == [device.ptr, device.ptr + 4 * 3 * SIZE * SIZE * 4]  # the caller's memory, per chunk


def test_gpu_input_of_the_wrong_dtype_names_the_fix(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    device = rt.device_array(images(2).astype(np.float16))
    with TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt) as be:
        with pytest.raises(ValueError, match="GPU input is float16 but the engine wants float32"):
            be.infer(batch_of(device, 2))


def test_fp16_engine_input_takes_fp16_host_tensors(tmp_path: Path) -> None:
    onnx = build_tiny_yolo_onnx(tmp_path / "half.onnx", input_size=SIZE, input_dtype="float16")
    model, rt, trt = seeded(tmp_path, onnx, dtype="float16")
    x = images(2, seed=5)
    with TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt) as be:
        assert be.input_dtype == np.dtype(np.float16)
        out = be.infer(batch_of(x, 2)).output  # float32 in: cast once on the host
    np.testing.assert_allclose(out, tiny_yolo_reference(x.astype(np.float16)), rtol=1e-3, atol=1e-3)


def test_wrong_host_shape_is_a_one_line_error(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    with TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt) as be:
        with pytest.raises(ValueError, match=r"input tensor is \[2, 3, 32, 32\], model wants \[2, 3, 64, 64\]"):
            be.infer(batch_of(np.zeros((2, 3, 32, 32), np.float32), 2))


def test_close_frees_everything_and_is_idempotent(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    be = TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt)
    pending = be.submit(batch_of(images(2), 2))
    be.close()
    assert rt.device_memory == {} and rt.host_memory == {} and rt.streams == {}
    be.close()
    np.testing.assert_allclose(pending.result().output, tiny_yolo_reference(images(2)), rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="backend is closed"):
        be.infer(batch_of(images(1), 1))


def test_corrupt_cache_entry_is_not_loaded(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    cache = EngineCache(tmp_path / "engines")
    engine_file = next((tmp_path / "engines").glob("*.engine"))
    engine_file.write_bytes(engine_file.read_bytes()[:-3])
    # the fake cannot build, so the rebuild the backend starts is what fails here
    with pytest.raises(AssertionError, match="cannot build"):
        TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt)
    assert trt.engines == []  # the truncated plan never reached deserialize
    assert cache.directory.exists()


def test_cached_plan_that_does_not_deserialize_is_rebuilt_once(tmp_path: Path, tiny: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    target = engine_target(trt.__version__, model, 4, gpu_identity(rt, 0))
    target.cache.store(tiny.stem, target.spec, b"checksummed, but not a plan")  # passes the checks
    with pytest.raises(AssertionError, match="cannot build"):  # the rebuild the backend starts
        TensorRtBackend(model, 4, "gpu", trt_module=trt, cuda_runtime=rt)
    assert "did not deserialize" in caplog.text and "rebuilding" in caplog.text


def test_missing_gpu_index_is_a_cuda_error(tmp_path: Path, tiny: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny)
    with pytest.raises(RuntimeError, match=r"cudaSetDevice\(1\) failed: cudaErrorInvalidValue"):
        TensorRtBackend(model, 4, "gpu:1", trt_module=trt, cuda_runtime=rt)


# ------------------------------------------------------------------ candidate selection (model.max_candidates)

THREE = ("a", "b", "c")  # 4 + 3 = 7 rows: the full output cannot pass for the 6-row candidates by accident
K = 10  # fewer than the tiny model's 64 anchors


def reference_candidates(x: np.ndarray, k: int, num_classes: int = 3) -> np.ndarray:
    """[B, 6, k] from the numpy reference: best class per anchor, the k best anchors, best first."""
    full = tiny_yolo_reference(x, num_classes=num_classes)
    scores = full[:, 4:]
    best, cls = scores.max(axis=1), scores.argmax(axis=1)
    order = np.argsort(-best, axis=1, kind="stable")[:, :k]

    def take(rows: np.ndarray) -> np.ndarray:
        return np.take_along_axis(rows, order, axis=-1)

    boxes = np.stack([take(full[:, r]) for r in range(4)], axis=1)
    return np.concatenate([boxes, take(best)[:, None], take(cls.astype(np.float32))[:, None]], axis=1)


@pytest.fixture(scope="module")
def tiny3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_yolo_onnx(tmp_path_factory.mktemp("m3") / "tiny3.onnx", num_classes=3, input_size=SIZE)


def test_candidates_engine_returns_k_candidates_in_the_candidates_layout(tmp_path: Path, tiny3: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny3, labels=THREE, max_candidates=K)
    x = images(6, seed=7)  # two chunks (4 + 2): both come back as candidates
    with TensorRtBackend(model, 4, "cpu", trt_module=trt, cuda_runtime=rt) as be:
        assert be.output_layout is OutputLayout.CANDIDATES and be.prepared.spec.max_candidates == K
        assert trt.engines[0].plan["onnx"].endswith(f".k{K}.candidates.onnx")  # the plan of the candidates model
        result = be.infer(batch_of(x, 6))
        pending = be.submit(batch_of(x[:3], 3)).result()
    assert result.layout is OutputLayout.CANDIDATES and pending.layout is OutputLayout.CANDIDATES
    assert result.output.shape == (6, 6, K) and pending.output.shape == (3, 6, K)
    np.testing.assert_allclose(result.output, reference_candidates(x, K), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pending.output, reference_candidates(x[:3], K), rtol=1e-5, atol=1e-6)
    assert ("cudaMalloc", 4 * 6 * K * 4) in rt.calls  # output buffer: K candidates, not 7 x 64 anchors


def test_full_output_engine_of_the_same_model_is_another_cache_entry(tmp_path: Path, tiny3: Path) -> None:
    model, rt, trt = seeded(tmp_path, tiny3, labels=THREE, max_candidates=None)
    x = images(2, seed=8)
    with TensorRtBackend(model, 4, "cpu", trt_module=trt, cuda_runtime=rt) as be:
        result = be.infer(batch_of(x, 2))
    assert result.layout is OutputLayout.ANCHORS and result.output.shape == (2, 7, 64)
    # the same cache folder asked for candidates has no engine for them: the fake cannot build, so it raises
    with pytest.raises(AssertionError, match="cannot build"):
        TensorRtBackend(model_config(tiny3, tmp_path / "engines", labels=THREE, max_candidates=K), 4, "cpu",
                        trt_module=trt, cuda_runtime=rt)


def test_label_count_is_checked_on_the_models_own_output_before_candidates(tmp_path: Path, tiny3: Path) -> None:
    rt = FakeCudaRuntime()
    model = model_config(tiny3, tmp_path / "engines", labels=("a", "b"), max_candidates=K)
    with pytest.raises(ValueError) as err:  # before any build: the fake's Builder would raise otherwise
        TensorRtBackend(model, 4, "gpu", trt_module=FakeTensorRt(rt), cuda_runtime=rt)
    msg = str(err.value)  # resolved from the ONNX file (pipeline/infer/model_spec.py) before any engine work
    assert "\n" not in msg and msg.startswith(f"{tiny3}: output output0 [batch, 7, 64]")
    assert "as yolov8 it has 3 classes, but model.labels has 2" in msg


def test_formats_other_than_yolov8_are_refused_in_one_line(tmp_path: Path) -> None:
    onnx = build_tiny_yolox_onnx(tmp_path / "yolox.onnx", num_classes=2, input_size=SIZE)
    rt = FakeCudaRuntime()
    model = model_config(onnx, tmp_path / "engines", labels=("a", "b"), max_candidates=K)
    with pytest.raises(ValueError) as err:
        TensorRtBackend(model.model_copy(update={"format": "yolox"}), 4, "gpu", trt_module=FakeTensorRt(rt),
                        cuda_runtime=rt)
    assert str(err.value) == (f"{onnx}: model.format yolox runs on backend onnxruntime only; backend tensorrt "
                              f"decodes the yolov8 layout [B, 4+C, N] (docs/models.md)")
