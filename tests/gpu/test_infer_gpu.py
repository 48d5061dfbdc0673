"""ONNX Runtime on the CUDA EP with IO binding of the fused letterbox's device output, against the CPU EP;
fp16; CUDA graphs (ONNX Runtime's own, and ours queued two deep: model.onnxruntime.queue_ahead)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.gpu_env import skip_module_without_gpu

skip_module_without_gpu("onnxruntime")

import onnxruntime as ort  # noqa: E402

if "CUDAExecutionProvider" not in ort.get_available_providers():
    pytest.skip(f"onnxruntime {ort.__version__} has no CUDA EP ({ort.get_available_providers()})",
                allow_module_level=True)

from pipeline.config import ModelConfig  # noqa: E402
from pipeline.gpu.memory import DeviceBufferPool, memory_type, upload  # noqa: E402
from pipeline.frame import Frame, FrameBatch  # noqa: E402
from pipeline.infer import create_backend  # noqa: E402
from pipeline.preprocess import create_preprocessor  # noqa: E402
from pipeline.preprocess.fused import FusedDeviceTensor  # noqa: E402
from tests.support.tiny_model import build_tiny_yolo_onnx  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "assets" / "demo" / "detector.onnx"
DEMO_LABELS = (REPO / "assets" / "demo" / "labels.txt")


def model_input_size(path: Path) -> int:
    import onnx

    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return int(dims[2].dim_value) or 640


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[ModelConfig]:
    tiny = build_tiny_yolo_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx", num_classes=3, input_size=64)
    # the full [B, 4+C, N] output, so GPU and CPU compare element by element (candidates are
    # sorted by score, and near-ties may sort differently on the two devices)
    out = [ModelConfig(path=tiny, labels=["a", "b", "c"], input_size=64, max_candidates=None)]
    if DEMO_MODEL.is_file():
        labels = [ln.strip() for ln in DEMO_LABELS.read_text().splitlines() if ln.strip()]
        out.append(ModelConfig(path=DEMO_MODEL, labels=labels, input_size=model_input_size(DEMO_MODEL),
                               max_candidates=None))
    return out


def frames_on_device(pool: DeviceBufferPool, n: int) -> tuple[Frame, ...]:
    rng = np.random.default_rng(n)
    sizes = [(1920, 1080), (1280, 720), (768, 576), (640, 480)]
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        image = np.ascontiguousarray(np.repeat(np.repeat(coarse, 16, 0), 16, 1)[:h, :w])
        out.append(Frame(f"cam{i}", i, None, 0.0, w, h, upload(pool, image)))
    return tuple(out)


def test_cuda_io_binding_matches_the_cpu_ep(models: list[ModelConfig]) -> None:
    pool = DeviceBufferPool(0)
    for model in models:
        frames = frames_on_device(pool, 6)
        with create_preprocessor("gpu", model.input_size, np.float32, 8, 2, kernel="fused") as pre, \
                create_backend(model, 4, "gpu") as gpu, create_backend(model, 8, "cpu") as cpu:
            batch = pre(FrameBatch(frames, 0.0, 0.0))
            assert isinstance(batch.tensor, FusedDeviceTensor)
            assert memory_type(batch.tensor.data_ptr) == "device"  # the model reads device memory
            on_gpu = gpu.infer(batch)  # 6 frames, max batch 4: split into 4 + 2 on the device
            host = batch.tensor.to_host()
            on_cpu = cpu._run_chunk(host, len(frames))
        scale = float(np.abs(on_cpu).max())
        err = float(np.abs(on_gpu.output - on_cpu).max())
        print(f"{model.path.name}: max |cuda - cpu| {err:.2e} (output scale {scale:.1f})")
        assert on_gpu.output.shape == on_cpu.shape
        assert err <= 2e-3 * max(1.0, scale)


def test_fp16_variant_is_converted_once_cached_and_close_to_fp32(models: list[ModelConfig], tmp_path: Path) -> None:
    pool = DeviceBufferPool(0)
    for fp32_model in models:
        fp16_model = fp32_model.model_copy(update={"precision": "fp16"})
        cache = tmp_path / fp32_model.path.stem
        frames = frames_on_device(pool, 4)
        with create_backend(fp16_model, 4, "gpu", cache_dir=cache) as b16:
            assert b16.input_dtype == np.float16
            cached = list(cache.glob("*.onnx"))
            assert len(cached) == 1
            stamp = cached[0].stat().st_mtime_ns
            with create_preprocessor("gpu", fp32_model.input_size, np.float16, 4, 2, kernel="fused") as pre16:
                out16 = b16.infer(pre16(FrameBatch(frames, 0.0, 0.0))).output
        with create_backend(fp16_model, 4, "gpu", cache_dir=cache):
            assert [p.stat().st_mtime_ns for p in cache.glob("*.onnx")] == [stamp]  # reused, not redone
        with create_backend(fp32_model, 4, "gpu") as b32, \
                create_preprocessor("gpu", fp32_model.input_size, np.float32, 4, 2, kernel="fused") as pre32:
            out32 = b32.infer(pre32(FrameBatch(frames, 0.0, 0.0))).output
        assert out16.dtype == np.float32 and out16.shape == out32.shape
        scale = float(np.abs(out32).max())
        err = float(np.abs(out16 - out32).max())
        print(f"{fp32_model.path.name}: max |fp16 - fp32| {err:.3e} (scale {scale:.1f})")
        assert err <= 2e-2 * max(1.0, scale)


def test_each_batch_size_has_its_own_session_and_alternating_sizes_agree(models: list[ModelConfig]) -> None:
    """The CUDA EP re-tunes a session whenever its input shape changes (1.2-1.7 s a call on the H200),
    so every padded batch size runs in a session of its own; results must not depend on the order."""
    pool = DeviceBufferPool(0)
    model = models[-1].model_copy(update={"max_candidates": 256})
    frames = frames_on_device(pool, 8)
    with create_preprocessor("gpu", model.input_size, np.float32, 8, 2, kernel="fused") as pre, \
            create_backend(model, 8, "gpu") as gpu:
        sessions = {b: gpu._batch_session(b) for b in (1, 2, 4, 8)}
        assert len({id(s.session) for s in sessions.values()}) == 4
        assert all(s.cuda_graph for s in sessions.values())  # model.onnxruntime.cuda_graph is on by default
        singles = [gpu.infer(pre(FrameBatch(frames[i:i + 1], 0.0, 0.0))).output for i in range(8)]
        for n in (3, 1, 8, 2, 5, 1, 4):  # batch sizes 4, 1, 8, 2, 8, 1, 4 in turn
            out = gpu.infer(pre(FrameBatch(frames[:n], 0.0, 0.0))).output
            for i in range(n):
                # scores, best first; each batch size has its own cuDNN algorithms (TF32 too): ~1e-3 apart
                np.testing.assert_allclose(out[i, 4], singles[i][0, 4], atol=5e-3)


@pytest.mark.parametrize("options", [{"cuda_graph": False, "prefer_nhwc": False, "priority_stream": False},
                                     {"cuda_graph": False}, {"prefer_nhwc": False}, {"priority_stream": False},
                                     {"queue_ahead": True}])
def test_every_onnxruntime_option_gives_the_default_sessions_results(models: list[ModelConfig],
                                                                     options: dict) -> None:
    """The defaults replay CUDA graphs of fixed buffers on a priority stream with NHWC kernels (queue_ahead:
    graphs of our own):
    every batch (also a padded one, also after other sizes) must read its own images, so results
    equal those of sessions with each option off, batch by batch."""
    pool = DeviceBufferPool(0)
    model = models[-1].model_copy(update={"max_candidates": 256})
    other = model.model_copy(update={"onnxruntime": model.onnxruntime.model_copy(update=options)})
    frames = frames_on_device(pool, 8)
    with create_preprocessor("gpu", model.input_size, np.float32, 8, 2, kernel="fused") as pre, \
            create_backend(model, 8, "gpu") as plain, create_backend(other, 8, "gpu") as changed:
        for n in (8, 3, 1, 5, 8):
            batch = pre(FrameBatch(frames[8 - n:], 0.0, 0.0))
            want, got = plain.infer(batch).output, changed.infer(batch).output
            assert got.shape == want.shape == (n, 6, min(256, want.shape[2]))
            # same anchors, scores ~1e-3 apart (each session tunes its own cuDNN algorithms)
            np.testing.assert_allclose(got[:, 4], want[:, 4], atol=5e-3)


def test_cuda_graphs_belong_to_the_thread_that_captured_them(models: list[ModelConfig]) -> None:
    """ONNX Runtime keeps a captured graph per thread and captures globally: a thread that did not
    warm up must run the plain way (never capture mid-stream), and bind_to_thread() gives it a graph."""
    import threading

    pool = DeviceBufferPool(0)
    model = models[-1].model_copy(update={"max_candidates": 256})
    frames = frames_on_device(pool, 8)
    seen: dict[str, object] = {}
    with create_preprocessor("gpu", model.input_size, np.float32, 8, 2, kernel="fused") as pre, \
            create_backend(model, 8, "gpu") as gpu:
        batch = pre(FrameBatch(frames, 0.0, 0.0))
        here = gpu.infer(batch).output
        session = gpu._batch_session(8)
        assert session.cuda_graph  # captured by the constructing thread at load

        def other_thread() -> None:
            seen["graph_before"] = session.cuda_graph
            seen["plain"] = [gpu.infer(batch).output for _ in range(4)]  # 4 runs: would capture if allowed
            gpu.bind_to_thread()
            seen["graph_after"] = session.cuda_graph
            seen["replayed"] = gpu.infer(batch).output

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join(120)
        again = gpu.infer(batch).output  # the constructing thread's graph still replays
    assert seen["graph_before"] is False and seen["graph_after"] is True
    for out in [*seen["plain"], seen["replayed"], again]:  # type: ignore[misc]
        np.testing.assert_allclose(out[:, 4], here[:, 4], atol=5e-3)


def test_queued_ahead_batches_read_their_own_images_and_finish_in_order(models: list[ModelConfig]) -> None:
    """model.onnxruntime.queue_ahead: our own graph, launched without waiting. Batches submitted back to
    back (also of different sizes, so different sessions on one stream) give what infer() gives for
    each alone, in order; the graph replays from any thread."""
    import threading

    pool = DeviceBufferPool(0)
    model = models[-1].model_copy(update={"max_candidates": 256})
    model = model.model_copy(update={"onnxruntime": model.onnxruntime.model_copy(update={"queue_ahead": True})})
    frames = frames_on_device(pool, 8)
    with create_preprocessor("gpu", model.input_size, np.float32, 8, 2, kernel="fused") as pre, \
            create_backend(model, 8, "gpu") as gpu:
        assert all(gpu._batch_session(n).queues_ahead for n in (1, 2, 4, 8))
        batches = [pre(FrameBatch(frames[8 - n:], 0.0, 0.0)) for n in (8, 3, 8, 1)]
        alone = [gpu.infer(b).output for b in batches]
        submitted = [gpu.submit(b) for b in batches[:2]]  # two in flight, as the inference stage keeps them
        assert not any(s.done for s in submitted)
        queued = [s.result().output for s in submitted]
        first, second = gpu.submit(batches[2]), gpu.submit(batches[3])
        queued += [first.result().output, second.result().output]
        elsewhere: list[np.ndarray] = []
        worker = threading.Thread(target=lambda: elsewhere.append(gpu.infer(batches[0]).output))
        worker.start()
        worker.join(60)
    for got, want in zip(queued + elsewhere, alone + alone[:1]):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)  # the same graph on the same images: bit for bit


def test_a_model_our_capture_refuses_runs_the_plain_way(models: list[ModelConfig]) -> None:
    """Found on the H200: the tiny model's Concat cannot be captured by us (ONNX Runtime copies its
    inputs' addresses from pageable memory when it does not know it is being captured). The session
    must then run the plain way, and its results equal ONNX Runtime's own graph's."""
    pool = DeviceBufferPool(0)
    tiny = models[0]
    queued = tiny.model_copy(update={"onnxruntime": tiny.onnxruntime.model_copy(update={"queue_ahead": True})})
    frames = frames_on_device(pool, 4)
    with create_preprocessor("gpu", tiny.input_size, np.float32, 4, 2, kernel="fused") as pre, \
            create_backend(tiny, 4, "gpu") as plain, create_backend(queued, 4, "gpu") as gpu:
        batch = pre(FrameBatch(frames, 0.0, 0.0))
        np.testing.assert_allclose(gpu.submit(batch).result().output, plain.infer(batch).output, atol=1e-4)
