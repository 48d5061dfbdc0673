"""Preprocess stage: FrameBatch -> TensorBatch (letterbox to SxS, pad 114, 0..1, RGB, CHW).

`create_preprocessor` builds the DALI letterbox (cpu or gpu). DALI is imported only there, so the
reference path and the shared types import without it.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.preprocess.base import (
    YOLO_INPUT,
    InputConvention,
    Preprocessor,
    PreprocessError,
    RejectFrame,
    log_rejected_frame,
)
from pipeline.preprocess.reference import PAD_VALUE, ReferencePreprocessor, letterbox_reference

if TYPE_CHECKING:  # the stage itself needs no pydantic
    from pipeline.config import PipelineConfig

__all__ = [
    "InputConvention", "YOLO_INPUT", "PAD_VALUE", "Preprocessor", "PreprocessError", "ReferencePreprocessor", "RejectFrame",
    "create_preprocessor", "preprocessor_from_config", "letterbox_reference", "log_rejected_frame",
]

log = logging.getLogger(__name__)


def create_preprocessor(device: str, input_size: int, dtype: Any = np.float32, max_batch: int = 16,
                        num_threads: int = 2, *, device_id: int = 0,
                        on_reject: RejectFrame | None = None,
                        convention: InputConvention = YOLO_INPUT) -> Preprocessor:
    """The DALI letterbox for `device` ("cpu" | "gpu"); its pipeline is built here, once.

    dtype: float32, float16 or uint8 output. convention: the model's input conventions (layout,
    channel order, scale/mean/std, letterbox or stretch; model_spec.input_convention). device_id: the GPU (gpu only). on_reject(frame, reason) is
    called for each frame whose image cannot be letterboxed (default: a warning in the log); the
    other frames of its batch go on. If DALI cannot be imported, "cpu" falls back to the
    numpy/OpenCV ReferencePreprocessor (same output within 1/255) with a warning; "gpu" raises.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"preprocess: device {device!r} must be 'cpu' or 'gpu'")
    try:
        from pipeline.preprocess.dali import DaliLetterbox
    except ImportError as exc:
        if device == "gpu":
            raise PreprocessError(f"preprocess: device gpu needs NVIDIA DALI: {exc}") from exc
        log.warning("preprocess: NVIDIA DALI unavailable (%s); using the OpenCV reference letterbox", exc)
        return ReferencePreprocessor(input_size, dtype, max_batch, on_reject, convention)
    return DaliLetterbox(device, input_size, dtype, max_batch, num_threads, device_id, on_reject, convention)


def preprocessor_from_config(cfg: "PipelineConfig", dtype: Any | None = None,
                             on_reject: RejectFrame | None = None, spec: Any = None) -> Preprocessor:
    """create_preprocessor from the daemon's config. dtype: the backend's input dtype when known;
    otherwise uint8 for a uint8-input model, float16 for `model.precision: fp16`, else float32.
    spec: the resolved ModelSpec (pipeline/infer/model_spec.py): its input size and conventions."""
    if dtype is None:
        if spec is not None and spec.input.dtype == np.uint8:
            dtype = np.uint8
        else:
            dtype = np.float16 if cfg.model.precision == "fp16" else np.float32
    size = spec.input.size if spec is not None else cfg.model.input_size
    convention = spec.convention() if spec is not None else YOLO_INPUT
    return create_preprocessor(cfg.preprocess.device, size, dtype, cfg.scheduler.max_batch,
                               cfg.preprocess.num_threads, device_id=cfg.primary_gpu, on_reject=on_reject,
                               convention=convention)
