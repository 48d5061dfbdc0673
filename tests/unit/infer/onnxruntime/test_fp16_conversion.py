"""fp32 -> fp16 ONNX conversion and its sha256-keyed cache (used for GPU + precision fp16)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pipeline.infer.onnxruntime.fp16 import fp16_model_path
from tests.support.tiny_model import build_tiny_yolo_onnx, tiny_yolo_reference


def elem_types(path: Path) -> tuple[int, int]:
    graph = onnx.load(str(path)).graph
    return graph.input[0].type.tensor_type.elem_type, graph.output[0].type.tensor_type.elem_type


def test_converts_input_to_fp16_keeps_output_fp32_and_caches_by_sha(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    src = build_tiny_yolo_onnx(tmp_path / "tiny.onnx")
    cache = tmp_path / "cache"
    with caplog.at_level("INFO", logger="pipeline.infer.onnxruntime.fp16"):
        out = fp16_model_path(src, cache)
    assert out.parent == cache and hashlib.sha256(src.read_bytes()).hexdigest()[:16] in out.name
    assert "converted" in caplog.text
    assert elem_types(out) == (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT)

    stamp = out.stat().st_mtime_ns
    assert fp16_model_path(src, cache) == out and out.stat().st_mtime_ns == stamp  # reused, not rewritten

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, 64, 64)).astype(np.float16)
    np.testing.assert_allclose(session.run(None, {"images": x})[0], tiny_yolo_reference(x, 2), atol=2e-3)


def test_same_file_name_with_other_content_gets_its_own_entry(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = fp16_model_path(build_tiny_yolo_onnx(tmp_path / "a" / "model.onnx", num_classes=2), tmp_path / "cache")
    b = fp16_model_path(build_tiny_yolo_onnx(tmp_path / "b" / "model.onnx", num_classes=3), tmp_path / "cache")
    assert a != b and a.is_file() and b.is_file()


def test_model_with_fp16_input_is_used_as_is(tmp_path: Path) -> None:
    src = build_tiny_yolo_onnx(tmp_path / "half.onnx", input_dtype="float16")
    assert fp16_model_path(src, tmp_path / "cache") == src
    assert not (tmp_path / "cache").exists()


def test_a_corrupt_cached_model_is_converted_again_not_reused(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """Issue 23 item 11: a truncated cache entry was loaded on every start."""
    src = build_tiny_yolo_onnx(tmp_path / "tiny.onnx")
    cache = tmp_path / "cache"
    out = fp16_model_path(src, cache)
    good = out.read_bytes()
    out.write_bytes(good[: len(good) // 2])  # a crash or a full disk mid-copy
    with caplog.at_level("WARNING", logger="pipeline.infer.onnxruntime.fp16"):
        again = fp16_model_path(src, cache)
    assert again == out and out.read_bytes() == good
    assert "does not match its checksum (corrupt or truncated): converting again" in caplog.text
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # loads


def test_an_unreadable_model_is_named_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT says "system error number 13" for a model it may not read; the backend says what that is.
    Stand-in (labelled): the tests run as root, who reads every file, so ORT's own error text is
    raised by a replaced InferenceSession instead of a real EACCES."""
    from pipeline.config import ModelConfig
    from pipeline.infer.onnxruntime import backend

    model = build_tiny_yolo_onnx(tmp_path / "tiny.onnx")

    def refuse(path: object, **_kw: object) -> None:
        raise RuntimeError(f"[ONNXRuntimeError] : 1 : FAIL : Load model from {path} failed:system error number 13\nmore")

    monkeypatch.setattr(backend.ort, "InferenceSession", refuse)
    with pytest.raises(ValueError) as err:
        backend.OnnxRuntimeBackend(ModelConfig(path=model, labels=["a", "b"], input_size=64), device="cpu", max_batch=1)
    assert str(err.value).endswith("failed:Permission denied") and "\n" not in str(err.value)
