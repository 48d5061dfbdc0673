"""model: the detector file, its backend and how its outputs are turned into detections.

The backend's own settings (model.onnxruntime, model.tensorrt, model.calibration) are declared by
the backend plug-ins (pipeline/infer/<backend>/config.py); this file only places them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from pipeline.config.base import StrictModel
from pipeline.infer.onnxruntime.config import OnnxRuntimeConfig
from pipeline.infer.plugins import BACKEND_KEYS, BACKEND_PLUGINS
from pipeline.infer.tensorrt.config import CalibrationConfig, TensorRtConfig
from pipeline.config.model_format import End2EndConfig, ModelFormat, ModelInputConfig

# model.backend accepts exactly the declared plug-ins (pipeline/infer/plugins.py): `pipeline check`
# rejects a misspelt backend with file:line and the valid names.
BackendKey = Literal[BACKEND_KEYS]  # type: ignore[valid-type]


class ModelConfig(StrictModel):
    path: Path
    backend: BackendKey = "onnxruntime"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    # auto: from the model's output shapes and metadata (pipeline/infer/model_spec.py, docs/models.md)
    format: ModelFormat = "auto"
    labels: list[str] = []  # empty: the class names in the model's metadata (ultralytics `names`)
    # When not set, a model with a static input size runs at that size (else 640).
    input_size: int = Field(640, ge=32, le=4096)
    input: ModelInputConfig = ModelInputConfig()
    end2end: End2EndConfig = End2EndConfig()  # format end2end only
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
    def _labels_named(cls, v: list[str]) -> list[str]:
        if any(not name.strip() for name in v):
            raise ValueError("labels: every class needs a non-empty name")
        return v


def _check_plugin_sections() -> None:
    """Every plug-in with settings has its section here, under its own key and model: the schema
    and the registry are built from the same declarations (a mismatch fails at import, not at run)."""
    for plugin in BACKEND_PLUGINS:
        field = ModelConfig.model_fields.get(plugin.key)
        if field is None or field.annotation is not plugin.settings:
            raise TypeError(f"ModelConfig needs a field {plugin.key}: {plugin.settings.__name__} "
                            f"(declared by the {plugin.key} backend plug-in)")


_check_plugin_sections()
