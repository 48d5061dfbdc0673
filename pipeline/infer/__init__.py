"""Inference backends. Importing this package registers the built-in ones."""
from pipeline.infer.base import Backend, create_backend, known_backends, register_backend
from pipeline.infer.onnxruntime.backend import OnnxRuntimeBackend  # registers "onnxruntime"
from pipeline.infer.tensorrt.backend import TensorRtBackend  # registers "tensorrt"

__all__ = ["Backend", "OnnxRuntimeBackend", "TensorRtBackend", "create_backend", "known_backends",
           "register_backend"]
