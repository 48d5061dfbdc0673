"""Preprocess stage: FrameBatch -> TensorBatch (letterbox to SxS, pad 114, 0..1, RGB, CHW).

`create_preprocessor` builds the DALI letterbox (cpu or gpu). DALI is imported only there, so the
reference path and the shared types import without it.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.preprocess.base import Preprocessor, PreprocessError, RejectFrame, log_rejected_frame
from pipeline.preprocess.reference import PAD_VALUE, ReferencePreprocessor, letterbox_reference

if TYPE_CHECKING:  # the stage itself needs no pydantic
    from pipeline.config import PipelineConfig

__all__ = [
    "PAD_VALUE", "Preprocessor", "PreprocessError", "ReferencePreprocessor", "RejectFrame",
    "create_preprocessor", "preprocessor_from_config", "letterbox_reference", "log_rejected_frame",
]

log = logging.getLogger(__name__)


def create_preprocessor(device: str, input_size: int, dtype: Any = np.float32, max_batch: int = 16,
                        num_threads: int = 2, *, device_id: int = 0,
                        on_reject: RejectFrame | None = None, kernel: str = "dali") -> Preprocessor:
    """The letterbox for `device` ("cpu" | "gpu"), built here, once.

    kernel (gpu only): "fused", the single-pass CUDA kernel (fused.py; takes NV12 and RGB frames),
    or "dali", the DALI letterbox (the reference path; RGB frames). On the cpu it is always DALI.

    dtype: float32 or float16 output. device_id: the GPU (gpu only). on_reject(frame, reason) is
    called for each frame whose image cannot be letterboxed (default: a warning in the log); the
    other frames of its batch go on. If DALI cannot be imported, "cpu" falls back to the
    numpy/OpenCV ReferencePreprocessor (same output within 1/255) with a warning; "gpu" raises.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"preprocess: device {device!r} must be 'cpu' or 'gpu'")
    if kernel not in ("fused", "dali"):
        raise ValueError(f"preprocess: kernel {kernel!r} must be 'fused' or 'dali'")
    if device == "gpu" and kernel == "fused":
        from pipeline.preprocess.fused import FusedLetterbox  # cuda-python only on first use

        return FusedLetterbox(input_size, dtype, max_batch, device_id, on_reject)
    try:
        from pipeline.preprocess.dali import DaliLetterbox
    except ImportError as exc:
        if device == "gpu":
            raise PreprocessError(f"preprocess: device gpu needs NVIDIA DALI: {exc}") from exc
        log.warning("preprocess: NVIDIA DALI unavailable (%s); using the OpenCV reference letterbox", exc)
        return ReferencePreprocessor(input_size, dtype, max_batch, on_reject)
    return DaliLetterbox(device, input_size, dtype, max_batch, num_threads, device_id, on_reject)


def preprocessor_from_config(cfg: "PipelineConfig", dtype: Any | None = None,
                             on_reject: RejectFrame | None = None) -> Preprocessor:
    """create_preprocessor from the daemon's config. dtype: the backend's input dtype when known;
    otherwise float16 for `model.precision: fp16`, else float32."""
    if dtype is None:
        dtype = np.float16 if cfg.model.precision == "fp16" else np.float32
    return create_preprocessor(cfg.preprocess.device, cfg.model.input_size, dtype, cfg.scheduler.max_batch,
                               cfg.preprocess.num_threads, device_id=cfg.decode.gpu_id, on_reject=on_reject,
                               kernel=cfg.preprocess.kernel)
