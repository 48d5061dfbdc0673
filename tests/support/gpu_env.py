"""Module-level skips for tests/gpu: each test module needs a CUDA device and some GPU libraries."""
from __future__ import annotations

import importlib

import pytest


def gpu_skip_reason(*modules: str) -> str | None:
    """Why GPU tests cannot run here (None when they can)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        return "cuda-python (cuda.bindings) is not installed"
    err, count = runtime.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        return f"no CUDA device ({getattr(err, 'name', err)})"
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - PyNvVideoCodec raises RuntimeError without a driver
            return f"{name} cannot be imported: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
    return None


def skip_module_without_gpu(*modules: str) -> None:
    reason = gpu_skip_reason(*modules)
    if reason:
        pytest.skip(reason, allow_module_level=True)
