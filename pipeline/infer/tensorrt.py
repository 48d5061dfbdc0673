"""TensorRT backend: registered so configs can name it; the engine build and run are a later issue."""
from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from pipeline.config import ModelConfig
from pipeline.infer.base import Backend, register_backend


@register_backend
class TensorRtBackend(Backend):
    type_key = "tensorrt"

    def __init__(self, model: ModelConfig, max_batch: int, device: str = "gpu", **options: Any) -> None:
        if importlib.util.find_spec("tensorrt") is None:
            raise RuntimeError("model.backend: tensorrt needs the [tensorrt] extra (pip install "
                               "'pipeline[tensorrt]') and an NVIDIA GPU; use backend: onnxruntime otherwise")
        raise NotImplementedError("model.backend: tensorrt is not implemented yet (engine build and "
                                  "execution are a later issue); use backend: onnxruntime")

    # Never reached: the constructor raises. Present so the class satisfies the Backend ABC.
    input_name = property(lambda self: "")  # type: ignore[assignment]
    input_size = property(lambda self: 0)  # type: ignore[assignment]
    input_dtype = property(lambda self: np.dtype(np.float32))  # type: ignore[assignment]
    max_batch = property(lambda self: 0)  # type: ignore[assignment]
    num_classes = property(lambda self: 0)  # type: ignore[assignment]

    def _run_chunk(self, chunk: Any, count: int) -> np.ndarray:
        raise NotImplementedError
