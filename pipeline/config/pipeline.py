"""The whole config file: cameras, model and the stage sections."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from pipeline.config.analytics import AnalyticsConfig
from pipeline.config.base import StrictModel
from pipeline.config.camera import CameraConfig
from pipeline.config.model import ModelConfig
from pipeline.config.preview import PreviewConfig
from pipeline.config.stages import (DecodeConfig, MetricsConfig, PreprocessConfig, PublishConfig,
                                    SchedulerConfig)


GpuId = Annotated[int, Field(ge=0, le=63)]  # a CUDA device index


class PipelineConfig(StrictModel):
    cameras: list[CameraConfig]
    model: ModelConfig
    decode: DecodeConfig = DecodeConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    publish: PublishConfig = PublishConfig()
    metrics: MetricsConfig = MetricsConfig()
    # The GPUs this daemon may use: a list of CUDA device ids, or all the visible ones. None: the
    # one GPU decode.gpu_id names (0 by default), i.e. decode.gpu_id is the one-GPU shorthand.
    gpus: list[GpuId] | Literal["all"] | None = None
    # A failed GPU's cameras move to the remaining GPUs (true) or report down until it is back (false).
    failover: bool = False
    preview: PreviewConfig | None = None  # the live preview page; absent: off (pipeline/preview/)
    analytics: AnalyticsConfig = AnalyticsConfig()

    @field_validator("gpus", mode="before")
    @classmethod
    def _list_or_all(cls, v: object) -> object:
        if v is not None and v != "all" and not isinstance(v, list):
            raise ValueError(f"expected a list of GPU ids like [0, 1] or all, got {v!r}")
        return v

    @field_validator("gpus")
    @classmethod
    def _one_way_to_name_gpus(cls, v: list[int] | str | None, info: ValidationInfo) -> list[int] | str | None:
        decode = info.data.get("decode")
        if v is not None and decode is not None and "gpu_id" in decode.model_fields_set:
            raise ValueError("decode.gpu_id is set too: name the GPUs in gpus: only "
                             "(decode.gpu_id: N is the one-GPU shorthand for gpus: [N])")
        if isinstance(v, list):
            if not v:
                raise ValueError("name at least one GPU, or leave gpus: out for the first")
            if len(set(v)) != len(v):
                raise ValueError(f"{v} names a GPU twice")
        return v

    @property
    def primary_gpu(self) -> int:
        """The GPU of the one-GPU path the daemon runs today (app/gpu_assignment.py: device_path):
        the first of gpus:, device 0 for gpus: all, else decode.gpu_id."""
        if isinstance(self.gpus, list):
            return self.gpus[0]
        return 0 if self.gpus == "all" else self.decode.gpu_id

    def gpu_ids(self, visible: int) -> tuple[int, ...]:
        """The GPUs to spread cameras over, given how many this machine shows (for gpus: all)."""
        if isinstance(self.gpus, list):
            return tuple(self.gpus)
        if self.gpus == "all":
            return tuple(range(visible))
        return (self.decode.gpu_id,)

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
