"""preview: the live preview web page and event snapshots (pipeline/preview/). Off unless present."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline.config.base import StrictModel

SNAPSHOT_EVENTS = ("zone_enter", "line_cross")


class SnapshotsConfig(StrictModel):
    """One annotated JPEG per trigger, written by a thread of its own; old files go by count and bytes."""

    dir: Path
    # "a class appears": a label in this list is detected on a camera where it was not in the
    # camera's previous detections message (and not snapshotted for it within cooldown_s)
    classes: list[str] = []
    events: list[Literal["zone_enter", "line_cross"]] = []  # analytics events (issue 17) that snapshot
    cooldown_s: float = Field(10.0, ge=0, le=86400)  # per camera and class/event kind
    max_files: int = Field(1000, ge=1, le=1_000_000)
    max_bytes: int = Field(500_000_000, ge=100_000, le=10**13)
    jpeg_quality: int = Field(85, ge=10, le=100)


class PreviewConfig(StrictModel):
    bind: str = "127.0.0.1:8080"  # HOST:PORT; anything but loopback needs a token
    fps: float = Field(2.0, gt=0, le=30)  # at most this many encoded frames per watched camera
    # the token a browser must present (?token= once, then a cookie); use ${secret:NAME}
    # so it comes from a systemd credential (LoadCredential=) and not the config file. SecretStr:
    # `pipeline check` and reprs print ********** instead of it
    token: SecretStr | None = None
    jpeg_quality: int = Field(75, ge=10, le=100)
    # frames are scaled down to this width for the grid's tiles (encoding cost goes with the pixels)...
    tile_width: int = Field(640, ge=160, le=8192)
    # ...and to this one for a camera's own page and for snapshots
    max_width: int = Field(1280, ge=160, le=8192)
    max_clients: int = Field(64, ge=1, le=4096)  # connections served at once; more get 503
    # a client that sends or reads nothing for this long is disconnected (its thread freed)
    client_timeout_s: float = Field(10.0, ge=0.5, le=300)
    snapshots: SnapshotsConfig | None = None

    @field_validator("bind")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"bind {v!r} must look like HOST:PORT (e.g. 127.0.0.1:8080)")
        return v

    @field_validator("token")
    @classmethod
    def _token_length(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not 16 <= len(v.get_secret_value()) <= 512:
            raise ValueError("token must be 16 to 512 characters (e.g. `openssl rand -hex 24`)")
        return v

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "PreviewConfig":
        if self.token is None and not is_loopback(self.bind):
            raise ValueError(f"bind {self.bind!r} is not loopback: set preview.token "
                             "(e.g. token: ${secret:preview_token} from a systemd credential)")
        return self

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])


def is_loopback(bind: str) -> bool:
    host = bind.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
