"""model: the detector file, its backend and how its outputs are turned into detections."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from pipeline.config.base import StrictModel


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


class OnnxRuntimeConfig(StrictModel):
    """CUDA EP settings of backend onnxruntime (docs/BENCHMARKS.md measures each on the H200)."""

    cuda_graph: bool = True  # replay each batch size as a captured CUDA graph (pipeline/infer/onnxruntime/gpu_sessions.py)
    prefer_nhwc: bool = True  # the CUDA EP's NHWC convolution kernels
    priority_stream: bool = True  # run inference on a highest-priority CUDA stream (ort_gpu.PriorityStream)


class ModelConfig(StrictModel):
    path: Path
    backend: str = "onnxruntime"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    labels: list[str]
    input_size: int = Field(640, ge=32, le=4096)
    score_threshold: float = Field(0.35, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.5, ge=0.0, le=1.0)
    max_detections: int = Field(300, ge=1, le=10000)
    # Copies of the model, each run by its own inference thread: with 2, one batch's host-side work
    # (copy in, hand-over, Python) overlaps the other's GPU time. Each copy has its own GPU memory.
    instances: int = Field(1, ge=1, le=8)
    # Best anchors per image selected on the device (pipeline/infer/candidates.py); null copies the
    # whole [B, 4+C, N] output to the host and decodes it there.
    max_candidates: int | None = Field(1024, ge=1, le=3840)  # 3840: TensorRT's TopK limit
    # backend tensorrt only; None: $STATE_DIRECTORY/engines, else ~/.cache/pipeline/engines
    engine_cache_dir: Path | None = None
    calibration: CalibrationConfig | None = None
    tensorrt: TensorRtConfig = TensorRtConfig()
    onnxruntime: OnnxRuntimeConfig = OnnxRuntimeConfig()  # device gpu only

    @field_validator("input_size")
    @classmethod
    def _stride(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"input_size {v} must be a multiple of 32")
        return v

    @field_validator("labels")
    @classmethod
    def _labels_nonempty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("labels must name at least one class")
        return v
