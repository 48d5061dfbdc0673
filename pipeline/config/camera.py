"""cameras: one entry per camera: where it is, what kind of source reads it."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from pipeline.config.base import StrictModel

CAMERA_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # 64: topics stay short (publish MAXMSGSIZE)
_USERINFO_BEFORE_LAST_AT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:/]*:(?P<password>.*)@(?=[^@]*$)", re.DOTALL)
_PERCENT = {"/": "%2F", "?": "%3F", "#": "%23"}
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://", "srt://")


class CameraConfig(StrictModel):
    id: str
    url: str
    # validate_default: "auto" is resolved from the url even when the key is absent
    type: Literal["auto", "file", "network", "synthetic"] = Field("auto", validate_default=True)
    loop: bool = False
    realtime: bool = True
    # network sources: seconds without a packet before the connection counts as dead;
    # files: seconds an open may block before the camera says so
    timeout_s: float = Field(5.0, gt=0, le=300)

    @field_validator("id")
    @classmethod
    def _id_charset(cls, v: str) -> str:
        if not CAMERA_ID.fullmatch(v):
            raise ValueError(f"camera id {v!r} must match [A-Za-z0-9_-]{{1,64}}")
        return v

    @field_validator("url")
    @classmethod
    def _password_encoded(cls, v: str) -> str:
        """FFmpeg ends a URL's user:password at the first '/', '?' or '#': such a password must be
        percent-encoded, or the camera fails later with a misleading 'Invalid argument'."""
        m = _USERINFO_BEFORE_LAST_AT.match(v)
        if m and not re.match(r"^\d+[/?#]", m.group("password")):  # host:PORT/path@...: no password
            for char in "/?#":
                if char in m.group("password"):
                    raise ValueError(f"the password in the url has an unencoded {char!r}: write it as "
                                     f"{_PERCENT[char]} (the password itself is not shown)")
        return v

    @field_validator("type")
    @classmethod
    def _resolve_type(cls, v: str, info: ValidationInfo) -> str:
        url = info.data.get("url", "")
        if v != "auto":
            return v
        if url.startswith("synthetic:"):
            return "synthetic"
        if url.lower().startswith(NETWORK_SCHEMES):
            return "network"
        return "file"

    @field_validator("loop")
    @classmethod
    def _loop_for_files(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("type") not in (None, "file"):
            raise ValueError("loop: applies to files only")
        return v

    @property
    def is_live(self) -> bool:
        """Live sources never wait on the pipeline: they drop the oldest frame instead."""
        return self.type == "network" or self.realtime
