"""Plug-in declaration of backend onnxruntime: its key and its settings (`model.onnxruntime:`).

Light on purpose (pydantic only): the config schema imports it; the backend itself
(pipeline/infer/onnxruntime/backend.py, onnxruntime and numpy) is imported only when it is created.
"""
from __future__ import annotations

from pipeline.config.base import StrictModel

BACKEND_KEY = "onnxruntime"
IMPLEMENTATION = "pipeline.infer.onnxruntime.backend"  # registers the Backend class for BACKEND_KEY


class OnnxRuntimeConfig(StrictModel):
    """CUDA EP settings of backend onnxruntime (docs/BENCHMARKS.md measures each on the H200)."""

    cuda_graph: bool = True  # replay each batch size as a captured CUDA graph (pipeline/infer/onnxruntime/gpu_sessions.py)
    prefer_nhwc: bool = True  # the CUDA EP's NHWC convolution kernels
    priority_stream: bool = True  # run inference on a highest-priority CUDA stream (gpu_sessions.priority_stream)
    # with cuda_graph and priority_stream: capture our own graph and queue the next batch before the
    # previous one is done (gpu_sessions.py, app/lookahead.py). Off by default: faster for inference
    # alone on the H200, but end to end measured slower (docs/BENCHMARKS.md, issue 22 session 4)
    queue_ahead: bool = False


SETTINGS = OnnxRuntimeConfig
