"""Inference backends. Importing this package registers the built-in ones."""
from pipeline.infer.base import Backend, create_backend, known_backends, register_backend
from pipeline.infer.onnxruntime import OnnxRuntimeBackend  # registers "onnxruntime"
from pipeline.infer.tensorrt import TensorRtBackend  # registers "tensorrt"

__all__ = ["Backend", "OnnxRuntimeBackend", "TensorRtBackend", "create_backend", "known_backends",
           "register_backend"]
