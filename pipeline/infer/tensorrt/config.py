"""Plug-in declaration of backend tensorrt: its key and its settings (`model.tensorrt:`,
`model.calibration:`).

Light on purpose (pydantic only): the config schema imports it; the backend itself
(pipeline/infer/tensorrt/backend.py) is imported only when it is created.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.config.base import StrictModel

BACKEND_KEY = "tensorrt"
IMPLEMENTATION = "pipeline.infer.tensorrt.backend"  # registers the Backend class for BACKEND_KEY


class CalibrationConfig(StrictModel):
    """INT8 calibration input for backend tensorrt: letterboxed frames drawn from these sources."""

    sources: list[str] = []  # camera ids from cameras:, video files (relative to the config) or URLs
    frames: int = Field(500, ge=1, le=100000)
    batch_size: int = Field(8, ge=1, le=1024)
    cache_file: Path | None = None  # None: beside the engines in model.engine_cache_dir


class TensorRtConfig(StrictModel):
    """Engine build and execution settings of backend tensorrt (see docs/tensorrt.md)."""

    opt_batch: int | None = Field(None, ge=1, le=1024)  # None: scheduler.max_batch // 2 (at least 1)
    contexts: int = Field(2, ge=1, le=8)  # execution contexts in flight, one profile each
    workspace_mib: int = Field(1024, ge=16, le=1 << 20)
    builder_optimization_level: int = Field(3, ge=0, le=5)


SETTINGS = TensorRtConfig
