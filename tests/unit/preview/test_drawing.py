"""Drawing: boxes in the class colour at source coordinates (scaled with the frame), and zones and
lines from camera configs of any shape issue 17 gives them (points, fractions or pixels)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.frame import Detection
from pipeline.preview.drawing import LINE_BGR, ZONE_BGR, class_colour_bgr, draw_detections, draw_regions, scaled_to
from pipeline.preview.service import _detection_json


@dataclass(frozen=True)
class TrackedDetection(Detection):  # what issue 17 adds: an optional track id
    track_id: int | None = None


@dataclass(frozen=True)
class Zone:
    name: str
    points: list


@dataclass(frozen=True)
class Line:
    name: str
    start: tuple
    end: tuple


@dataclass(frozen=True)
class Camera:
    id: str
    zones: list
    lines: list


def test_boxes_scale_with_the_frame_and_carry_track_ids() -> None:
    image = np.zeros((400, 2000, 3), np.uint8)
    bgr, scale = scaled_to(image, max_width=1000)
    assert bgr.shape == (200, 1000, 3) and scale == 0.5  # an exact 2:1, INTER_AREA
    det = TrackedDetection("car", 1, 0.8, (200.0, 100.0, 600.0, 380.0), track_id=42)
    draw_detections(bgr, [det], scale)
    assert tuple(bgr[120, 100]) == class_colour_bgr(1)  # left edge x=100 in the scaled frame
    assert tuple(bgr[120, 150]) == (0, 0, 0)
    assert _detection_json(det)["track_id"] == 42
    assert "track_id" not in _detection_json(Detection("car", 1, 0.8, (0, 0, 1, 1)))


def test_zones_and_lines_in_pixels_or_fractions() -> None:
    bgr = np.zeros((100, 200, 3), np.uint8)
    camera = Camera("a", zones=[Zone("door", [[0.1, 0.2], [0.5, 0.2], [0.5, 0.8]])],
                    lines=[Line("gate", (150, 10), (150, 90))])
    draw_regions(bgr, camera, 200, 100, 1.0)
    assert tuple(bgr[20, 60]) == ZONE_BGR  # top edge of the zone: y = 0.2 * 100, x in 20..100
    assert tuple(bgr[50, 150]) == LINE_BGR
    draw_regions(bgr, Camera("b", zones=[Zone("bad", [["x"]])], lines=[]), 200, 100, 1.0)  # ignored, no error
