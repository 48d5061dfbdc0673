"""The whole config file: cameras, model and the stage sections."""
from __future__ import annotations

from pydantic import ValidationInfo, field_validator

from pipeline.config.base import StrictModel
from pipeline.config.camera import CameraConfig
from pipeline.config.model import ModelConfig
from pipeline.config.stages import (DecodeConfig, MetricsConfig, PreprocessConfig, PublishConfig,
                                    SchedulerConfig)


class PipelineConfig(StrictModel):
    cameras: list[CameraConfig]
    model: ModelConfig
    decode: DecodeConfig = DecodeConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    publish: PublishConfig = PublishConfig()
    metrics: MetricsConfig = MetricsConfig()

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, v: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for cam in v:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} is used twice")
            seen.add(cam.id)
        if not v:
            raise ValueError("at least one camera is needed")
        return v

    @field_validator("preprocess")
    @classmethod
    def _takes_what_decode_gives(cls, v: PreprocessConfig, info: ValidationInfo) -> PreprocessConfig:
        decode = info.data.get("decode")
        if (decode is not None and decode.device == "gpu" and decode.nvdec_output == "nv12"
                and (v.device, v.kernel) != ("gpu", "fused")):
            raise ValueError(f"decode.nvdec_output nv12 needs preprocess device gpu with kernel fused "
                             f"(here device {v.device}, kernel {v.kernel}); or set decode.nvdec_output: rgb")
        return v
