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
                        convention: InputConvention = YOLO_INPUT, kernel: str = "dali",
                        nv12_frames: bool = False, high_priority: bool = False) -> Preprocessor:
    """The letterbox for `device` ("cpu" | "gpu"), built here, once.

    kernel (gpu only): "fused", the single-pass CUDA kernel (fused.py; takes NV12 and RGB frames),
    or "dali", the DALI letterbox (the reference path; RGB frames). On the cpu it is always DALI.
    The fused kernel writes the YOLO convention (NCHW RGB, x/255, letterbox 114) in float32/float16:
    a model that takes anything else runs on DALI instead (a warning), unless the frames are NV12
    (`nv12_frames`, which only the fused kernel reads): then this is a PreprocessError.

    high_priority (fused only): launch on a highest-priority stream, beside an inference stream of that
    priority that is never idle (model.onnxruntime.queue_ahead), so the letterbox is not left to the
    SMs inference leaves free.

    dtype: float32, float16 or uint8 output. convention: the model's input conventions (layout,
    channel order, scale/mean/std, letterbox or stretch; model_spec.input_convention). device_id: the GPU (gpu only). on_reject(frame, reason) is
    called for each frame whose image cannot be letterboxed (default: a warning in the log); the
    other frames of its batch go on. If DALI cannot be imported, "cpu" falls back to the
    numpy/OpenCV ReferencePreprocessor (same output within 1/255) with a warning; "gpu" raises.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"preprocess: device {device!r} must be 'cpu' or 'gpu'")
    if kernel not in ("fused", "dali"):
        raise ValueError(f"preprocess: kernel {kernel!r} must be 'fused' or 'dali'")
    if device == "gpu" and kernel == "fused" and not fused_kernel_fits(convention, dtype):
        if nv12_frames:
            raise PreprocessError(
                "preprocess: decode.nvdec_output nv12 needs preprocess.kernel fused, which writes NCHW RGB "
                f"x/255 letterboxed float input; this model takes {convention.layout} {convention.channels} "
                f"{np.dtype(dtype).name} {convention.resize}: use decode.nvdec_output rgb")
        log.warning("preprocess: the fused kernel writes NCHW RGB x/255 letterboxed float input; this model "
                    "takes %s %s %s %s, so DALI prepares its frames", convention.layout, convention.channels,
                    np.dtype(dtype).name, convention.resize)
        kernel = "dali"
    if device == "gpu" and kernel == "fused":
        from pipeline.preprocess.fused import FusedLetterbox  # cuda-python only on first use

        return FusedLetterbox(input_size, dtype, max_batch, device_id, on_reject, high_priority=high_priority)
    try:
        from pipeline.preprocess.dali import DaliLetterbox
    except ImportError as exc:
        if device == "gpu":
            raise PreprocessError(f"preprocess: device gpu needs NVIDIA DALI: {exc}") from exc
        log.warning("preprocess: NVIDIA DALI unavailable (%s); using the OpenCV reference letterbox", exc)
        return ReferencePreprocessor(input_size, dtype, max_batch, on_reject, convention)
    return DaliLetterbox(device, input_size, dtype, max_batch, num_threads, device_id, on_reject, convention)


def fused_kernel_fits(convention: InputConvention, dtype: Any) -> bool:
    """Whether the fused kernel (fused.py) writes what this model takes."""
    return convention == YOLO_INPUT and np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float16))


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
                               convention=convention, kernel=cfg.preprocess.kernel,
                               nv12_frames=cfg.decode.nvdec_output == "nv12")
