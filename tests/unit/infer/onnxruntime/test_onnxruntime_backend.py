"""OnnxRuntimeBackend on the tiny real ONNX model (tests/support/tiny_model.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ModelConfig
from pipeline.frame import Frame, LetterboxTransform, OutputLayout, TensorBatch
from pipeline.infer import Backend, OnnxRuntimeBackend, create_backend
from tests.support.tiny_model import build_tiny_yolo_onnx, tiny_yolo_reference

LABELS = ["red", "green"]
S = 64


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {
        "dynamic": build_tiny_yolo_onnx(d / "tiny.onnx", num_classes=2, input_size=S),
        "fixed2": build_tiny_yolo_onnx(d / "tiny_b2.onnx", num_classes=2, input_size=S, batch=2),
        "fp16": build_tiny_yolo_onnx(d / "tiny_fp16.onnx", num_classes=2, input_size=S, input_dtype="float16"),
        "three_classes": build_tiny_yolo_onnx(d / "tiny_c3.onnx", num_classes=3, input_size=S),
    }


def backend(path: Path, max_batch: int = 4, labels: list[str] = LABELS, input_size: int = S,
            max_candidates: int | None = None) -> Backend:
    """max_candidates None (the full [B, 4+C, N] output) unless a test asks for candidates, so the
    outputs can be compared with tiny_yolo_reference element by element."""
    cfg = ModelConfig(path=path, labels=labels, input_size=input_size, max_candidates=max_candidates)
    return create_backend(cfg, max_batch, "cpu", intra_op_threads=1)


def batch_of(tensor: np.ndarray) -> TensorBatch:
    n = tensor.shape[0]
    frames = tuple(Frame("cam0", i, i / 25, 1000.0 + i, 128, 96, None) for i in range(n))
    transforms = (LetterboxTransform.fit(128, 96, S),) * n
    return TensorBatch(frames=frames, transforms=transforms, tensor=tensor, formed_at=42.0)


def images(n: int, seed: int = 0, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, S, S)).astype(dtype)


def test_properties_describe_the_model(models: dict[str, Path]) -> None:
    be = backend(models["dynamic"], max_batch=4)
    assert isinstance(be, OnnxRuntimeBackend) and be.type_key == "onnxruntime"
    assert (be.input_name, be.input_size, be.input_dtype, be.max_batch, be.num_classes) == \
        ("images", S, np.dtype(np.float32), 4, 2)


@pytest.mark.parametrize("n", [1, 3, 4])
def test_output_matches_the_model_function(models: dict[str, Path], n: int) -> None:
    be = backend(models["dynamic"], max_batch=4)
    x = images(n, seed=n)
    batch = batch_of(x)
    result = be.infer(batch)
    assert result.output.dtype == np.float32
    assert result.output.shape == (n, 4 + 2, (S // 8) ** 2)
    np.testing.assert_allclose(result.output, tiny_yolo_reference(x, 2), atol=1e-5)
    assert result.frames is batch.frames and result.transforms is batch.transforms
    assert result.formed_at == 42.0


def test_oversize_batch_is_split_and_equals_single_runs(models: dict[str, Path]) -> None:
    be = backend(models["dynamic"], max_batch=2)
    x = images(5, seed=7)
    whole = be.infer(batch_of(x)).output
    singles = np.concatenate([be.infer(batch_of(x[i:i + 1])).output for i in range(5)])
    assert whole.shape == (5, 6, 64)
    np.testing.assert_array_equal(whole, singles)


def test_fixed_batch_model_sets_max_batch_and_pads_the_last_chunk(models: dict[str, Path]) -> None:
    be = backend(models["fixed2"], max_batch=8)
    assert be.max_batch == 2  # the model's own batch wins
    x = images(5, seed=3)  # 2 + 2 + 1: the last chunk needs padding, or ORT rejects it
    out = be.infer(batch_of(x)).output
    assert out.shape == (5, 6, 64)
    np.testing.assert_allclose(out, tiny_yolo_reference(x, 2), atol=1e-5)


def test_input_is_cast_to_the_model_dtype(models: dict[str, Path]) -> None:
    fp16 = backend(models["fp16"])
    assert fp16.input_dtype == np.dtype(np.float16)
    x = images(3, seed=5)  # float32 into a float16 model
    np.testing.assert_allclose(fp16.infer(batch_of(x)).output, tiny_yolo_reference(x.astype(np.float16), 2),
                               atol=1e-3)
    fp32 = backend(models["dynamic"])
    x64 = images(2, seed=6, dtype=np.float64)  # float64 into a float32 model
    np.testing.assert_allclose(fp32.infer(batch_of(x64)).output, tiny_yolo_reference(x64, 2), atol=1e-5)


@pytest.mark.parametrize("max_candidates", [None, 16])
def test_wrong_class_count_is_one_line_naming_the_file(models: dict[str, Path], max_candidates: int | None) -> None:
    with pytest.raises(ValueError) as err:  # checked on the model's own output, candidates or not
        backend(models["three_classes"], labels=LABELS, max_candidates=max_candidates)
    msg = str(err.value)
    assert "\n" not in msg and "tiny_c3.onnx" in msg
    assert "3 classes" in msg and "model.labels has 2" in msg


def test_wrong_input_size_is_one_line_naming_the_file(models: dict[str, Path]) -> None:
    with pytest.raises(ValueError) as err:
        backend(models["dynamic"], input_size=96)
    msg = str(err.value)
    assert "\n" not in msg and "tiny.onnx" in msg
    assert "[batch, 3, 64, 64]" in msg and "model.input_size is 96" in msg


def test_unreadable_and_missing_models_are_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    for path, words in [(junk, "cannot load ONNX model"), (tmp_path / "absent.onnx", "no such model file")]:
        with pytest.raises(ValueError) as err:
            backend(path, max_candidates=1024)
        assert "\n" not in str(err.value) and str(path) in str(err.value) and words in str(err.value)


def test_tensor_of_the_wrong_shape_is_rejected(models: dict[str, Path]) -> None:
    be = backend(models["dynamic"])
    bad = TensorBatch(frames=batch_of(images(2)).frames, transforms=(), tensor=np.zeros((2, 3, 32, 32), np.float32),
                      formed_at=0.0)
    with pytest.raises(ValueError, match=r"input tensor is \[2, 3, 32, 32\], model wants \[2, 3, 64, 64\]"):
        be.infer(bad)


def test_closed_backend_refuses_to_run(models: dict[str, Path]) -> None:
    be = backend(models["dynamic"])
    be.close()
    be.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        be.infer(batch_of(images(1)))


@pytest.mark.parametrize("n", [1, 3, 5])
def test_candidates_are_the_best_anchors_of_the_full_output(models: dict[str, Path], n: int) -> None:
    full = backend(models["dynamic"], max_batch=4)
    top = backend(models["dynamic"], max_batch=4, max_candidates=10)
    assert (full.output_layout, top.output_layout) == (OutputLayout.ANCHORS, OutputLayout.CANDIDATES)
    x = images(n, seed=10 + n)
    raw = full.infer(batch_of(x)).output
    result = top.infer(batch_of(x))
    assert result.layout is OutputLayout.CANDIDATES and result.output.shape == (n, 6, 10)
    for i in range(n):
        best, cls = raw[i, 4:].max(axis=0), raw[i, 4:].argmax(axis=0)
        order = np.argsort(-best, kind="stable")[:10]
        got = result.output[i]
        np.testing.assert_array_equal(got[4], best[order])  # sorted, best first
        np.testing.assert_array_equal(got[5], cls[order].astype(np.float32))
        np.testing.assert_array_equal(got[:4], raw[i, :4][:, order])


def test_candidates_cap_at_the_anchor_count_and_work_in_fp16_models(models: dict[str, Path]) -> None:
    be = backend(models["fp16"], max_candidates=3840)  # more than the 64 anchors: all of them
    out = be.infer(batch_of(images(2, seed=4))).output
    assert out.shape == (2, 6, 64) and out.dtype == np.float32
    assert np.all(np.diff(out[:, 4], axis=1) <= 0)


def test_gpu_batches_are_padded_to_a_few_sizes_with_little_waste() -> None:
    from pipeline.infer.onnxruntime.backend import padded_batch

    assert [padded_batch(n, 32) for n in (1, 2, 3, 5, 8, 9, 16, 17, 24, 25, 32)] == \
        [1, 2, 4, 8, 8, 16, 16, 24, 24, 32, 32]
    for max_batch in (1, 3, 8, 32, 64, 100):
        sizes = {padded_batch(n, max_batch) for n in range(1, max_batch + 1)}
        assert max(sizes) == max_batch and len(sizes) <= 9  # one ORT session per size
        assert all(n <= padded_batch(n, max_batch) <= max_batch for n in range(1, max_batch + 1))
