"""analytics: tracking (top-level section) and each camera's zones and lines (cameras[i].analytics).

Coordinates: fractions of the frame (0..1, origin top-left) by default; with `frame_size: [W, H]`
they are pixels of a W x H frame (scaled if the stream's size differs). Either way they are
checked against the frame here, so a bad zone is a config error and not a silent no-op.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator

from pipeline.config.base import StrictModel

if TYPE_CHECKING:  # numpy is imported where zones are checked or used: the config itself stays light
    import numpy as np

RULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
Point = tuple[float, float]


def _check_name(v: str) -> str:
    if not RULE_NAME.fullmatch(v):
        raise ValueError(f"name {v!r} must match [A-Za-z0-9_-]+")
    return v


class ZoneConfig(StrictModel):
    name: str
    points: list[Point] = Field(max_length=256)  # polygon corners, in order
    classes: list[str] | None = None  # labels counted here; null: every class
    loiter_s: float | None = Field(None, gt=0, le=86400)  # a `loitering` event after this dwell

    _name = field_validator("name")(_check_name)

    @field_validator("points")
    @classmethod
    def _polygon(cls, v: list[Point]) -> list[Point]:
        import numpy as np

        from pipeline.analytics.geometry import polygon_problem

        problem = polygon_problem(np.asarray(v, np.float64).reshape(-1, 2))
        if problem:
            raise ValueError(problem)
        return v


class LineConfig(StrictModel):
    name: str
    start: Point
    end: Point  # direction "forward" is from the left of start->end to its right (docs/messages.md)
    classes: list[str] | None = None

    _name = field_validator("name")(_check_name)

    @model_validator(mode="after")
    def _length(self) -> "LineConfig":
        if self.start == self.end:
            raise ValueError(f"line {self.name!r} has zero length (start == end)")
        return self


class CameraAnalyticsConfig(StrictModel):
    """cameras[i].analytics: changes here apply on reload (SIGHUP) without restarting the camera.
    Points inside the frame, unique names and known classes are checked by the loader
    (config/loader.py), which knows each point's line."""

    frame_size: tuple[int, int] | None = None  # [W, H]: points are pixels of this frame; null: fractions
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=64)
    lines: list[LineConfig] = Field(default_factory=list, max_length=64)

    @field_validator("frame_size")
    @classmethod
    def _size(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not (1 <= v[0] <= 16384 and 1 <= v[1] <= 16384):
            raise ValueError(f"frame_size {list(v)} must be [W, H] with each 1..16384")
        return v

    def outside(self, x: float, y: float) -> str | None:
        """Why (x, y) is not in the frame, or None."""
        w, h = self.frame_size or (1.0, 1.0)
        if 0 <= x <= w and 0 <= y <= h:
            return None
        unit = f"pixels of frame_size {w}x{h}" if self.frame_size else "fractions 0..1 (or set frame_size for pixels)"
        return f"point [{x:g}, {y:g}] is outside the frame: coordinates are {unit}"

    def fractions(self, points: list[Point]) -> "np.ndarray":
        import numpy as np

        w, h = self.frame_size or (1, 1)
        return np.asarray(points, np.float64).reshape(-1, 2) / np.array([w, h], np.float64)

    @property
    def active(self) -> bool:
        return bool(self.zones or self.lines)


class AnalyticsConfig(StrictModel):
    """Top-level analytics: tracking for every camera (ByteTrack, pipeline/analytics/tracker.py)."""

    tracking: bool = False  # track ids in detections; zones/lines need it on
    class_agnostic: bool = False  # true: a track may change class (one id per object, any label)
    high_score: float = Field(0.5, ge=0, le=1)  # first association round takes detections from here
    low_score: float = Field(0.1, ge=0, le=1)  # second round: low_score .. high_score
    new_track_score: float = Field(0.6, ge=0, le=1)  # an unmatched detection starts a track from here
    match_iou: float = Field(0.2, gt=0, le=1)  # first round: IoU x score at least this
    low_match_iou: float = Field(0.5, gt=0, le=1)  # second round: IoU at least this
    lost_frames: int = Field(30, ge=1, le=10_000)  # an unmatched track is kept this many frames
    max_tracks: int = Field(1000, ge=1, le=100_000)  # per camera: bounded memory

    @model_validator(mode="after")
    def _bands(self) -> "AnalyticsConfig":
        if self.low_score > self.high_score:
            raise ValueError(f"low_score {self.low_score} is above high_score {self.high_score}")
        return self
