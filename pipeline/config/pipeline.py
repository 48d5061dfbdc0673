"""The whole config file: cameras, model and the stage sections."""
from __future__ import annotations

from pydantic import field_validator

from pipeline.config.analytics import AnalyticsConfig
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
    analytics: AnalyticsConfig = AnalyticsConfig()

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

