"""cameras: one entry per camera: where it is, what kind of source reads it.

The kinds (`type:`), how `type: auto` recognises them, and which options belong to which kind are
declared by the source plug-ins (pipeline/sources/plugins.py); this file only checks against them.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from pipeline.config.analytics import CameraAnalyticsConfig
from pipeline.config.base import StrictModel
from pipeline.sources.plugins import NETWORK_SCHEMES, SOURCE_KEYS, kind_for_url, readers_of

CAMERA_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # 64: topics stay short (publish MAXMSGSIZE)
_USERINFO_BEFORE_LAST_AT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:/]*:(?P<password>.*)@(?=[^@]*$)", re.DOTALL)
_PERCENT = {"/": "%2F", "?": "%3F", "#": "%23"}
__all__ = ["CAMERA_ID", "NETWORK_SCHEMES", "CameraConfig"]

# `auto` plus every declared source kind: a misspelt type is a config error with file:line
CameraType = Literal[("auto", *SOURCE_KEYS)]  # type: ignore[valid-type]


class CameraConfig(StrictModel):
    id: str
    url: str
    # validate_default: "auto" is resolved from the url even when the key is absent
    type: CameraType = Field("auto", validate_default=True)
    loop: bool = False
    realtime: bool = True
    # network sources: seconds without a packet before the connection counts as dead;
    # files: seconds an open may block before the camera says so
    timeout_s: float = Field(5.0, gt=0, le=300)
    # pin this camera to one GPU of `gpus:` (None: placed by expected load, app/gpu_assignment.py)
    gpu: int | None = Field(None, ge=0, le=63)
    # zones and lines (pipeline/config/analytics.py); a reload changes them without a camera restart
    analytics: CameraAnalyticsConfig = CameraAnalyticsConfig()

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
        return kind_for_url(info.data.get("url", "")) if v == "auto" else v

    @field_validator("loop", "timeout_s")
    @classmethod
    def _option_of_its_kind(cls, v: object, info: ValidationInfo) -> object:
        """An option only some kinds read, set to a non-default value on another kind, is a mistake."""
        readers = readers_of(info.field_name or "")
        kind = info.data.get("type")
        if readers and kind not in (None, *readers) and v != cls.model_fields[info.field_name].default:
            raise ValueError(f"{info.field_name}: applies to {' and '.join(readers)} cameras only (this one is {kind})")
        return v

    @property
    def is_live(self) -> bool:
        """Live sources never wait on the pipeline: they drop the oldest frame instead."""
        return self.type == "network" or self.realtime
