"""decode, preprocess, scheduler, publish, metrics: how the stages between camera and subscriber run."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from pipeline.config.base import StrictModel
from pipeline.config.endpoints import check_host_port, check_zmq_endpoint


class DecodeConfig(StrictModel):
    device: Literal["cpu", "gpu"] = "cpu"
    gpu_id: int = Field(0, ge=0, le=63)  # the one GPU; several: gpus: at the top level
    # Processes that run the cameras (decode included), so decoding does not share the daemon's
    # GIL; 0: camera threads in the daemon process (pipeline/workers/).
    workers: int = Field(0, ge=0, le=64)
    # What NVDEC hands on: "nv12", the decoded surface as is (the fused preprocess kernel converts
    # it to RGB while it letterboxes: one pass), or "rgb", NVDEC's own conversion (DALI needs it).
    nvdec_output: Literal["nv12", "rgb"] = "rgb"


class PreprocessConfig(StrictModel):
    device: Literal["cpu", "gpu"] = "cpu"
    # gpu only: "fused", one CUDA kernel that converts, letterboxes and normalises in one pass
    # (takes NV12 or RGB); "dali", the DALI letterbox (RGB only; the reference path).
    kernel: Literal["fused", "dali"] = "fused"
    num_threads: int = Field(2, ge=1, le=64)  # DALI's worker threads


class SchedulerConfig(StrictModel):
    max_batch: int = Field(16, ge=1, le=1024)
    max_wait_ms: float = Field(20, ge=0, le=10000)
    queue_per_camera: int = Field(4, ge=1, le=1000)


class CurveConfig(StrictModel):
    """ZeroMQ CURVE on the publish socket: encryption, and only listed subscribers get in."""

    server_secret_key_file: Path  # a zmq.auth secret certificate (`pipeline curve-keys` makes one)
    authorized_clients_dir: Path  # the clients' public certificates (*.key); re-read on reload


class PublishConfig(StrictModel):
    bind: str = "tcp://127.0.0.1:5555"
    # messages queued per subscriber; a million ~1 KB messages is already a GB per slow subscriber
    high_water_mark: int = Field(10000, ge=1, le=1_000_000)
    linger_ms: int = Field(1000, ge=0, le=60_000)  # at exit; systemd's TimeoutStopSec is 20 s
    # subscriber connections at once (without CURVE; more are refused at the handshake): each
    # holds an fd and up to high_water_mark queued messages
    max_subscribers: int = Field(256, ge=1, le=10_000)
    curve: CurveConfig | None = None

    @field_validator("bind")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        check_zmq_endpoint(v)
        return v


class MetricsConfig(StrictModel):
    bind: str | None = "127.0.0.1:9108"  # null turns the HTTP endpoint off

    @field_validator("bind")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is not None:
            check_host_port(v, f"bind {v!r}")
        return v
