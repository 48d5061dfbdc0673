"""The GPU batch-size sessions' model preparation, on the CPU (the sessions themselves: tests/gpu)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from pipeline.infer.candidates import append_candidate_selection
from pipeline.infer.onnxruntime.gpu_sessions import with_fixed_batch
from tests.support.tiny_model import build_tiny_yolo_onnx


def test_a_fixed_batch_model_gives_the_dynamic_models_results(tmp_path) -> None:
    path = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=3, input_size=64)
    model = append_candidate_selection(onnx.load(str(path)), 32)
    x = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
    dynamic = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    fixed = ort.InferenceSession(with_fixed_batch(model, 4), providers=["CPUExecutionProvider"])
    assert fixed.get_inputs()[0].shape[0] == 4 and dynamic.get_inputs()[0].shape[0] != 4
    name = fixed.get_inputs()[0].name
    np.testing.assert_array_equal(fixed.run(None, {name: x})[0], dynamic.run(None, {name: x})[0])
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 0  # the original is untouched
