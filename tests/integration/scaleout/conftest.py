from __future__ import annotations

import pytest

from tests.support.tiny_model import build_tiny_yolo_onnx


@pytest.fixture(scope="package")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = build_tiny_yolo_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", num_classes=3, input_size=64)
    return {"path": str(path), "labels": ["red", "green", "blue"], "input_size": 64, "score_threshold": 0.6}
