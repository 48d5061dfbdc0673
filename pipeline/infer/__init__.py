"""Inference backends. The built-in ones are declared in pipeline/infer/plugins.py and imported
when first created (create_backend), so importing this package costs nothing: the config schema
imports the light plug-in declarations under it."""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Backend": "pipeline.infer.base", "create_backend": "pipeline.infer.base",
    "known_backends": "pipeline.infer.base", "register_backend": "pipeline.infer.base",
    "OnnxRuntimeBackend": "pipeline.infer.onnxruntime.backend",
    "TensorRtBackend": "pipeline.infer.tensorrt.backend",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # PEP 562: the names above, imported on first use
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.infer' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
