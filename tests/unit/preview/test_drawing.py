"""Drawing: boxes in the class colour at source coordinates (scaled with the frame), and a camera's
zones and lines from its real config (fractions, or pixels of frame_size), scaled with the frame."""
from __future__ import annotations

import numpy as np

from pipeline.config.analytics import CameraAnalyticsConfig
from pipeline.frame import Detection
from pipeline.preview.drawing import LINE_BGR, ZONE_BGR, class_colour_bgr, draw_detections, draw_regions, scaled_to
from pipeline.preview.service import _detection_json


def test_boxes_scale_with_the_frame_and_carry_track_ids() -> None:
    image = np.zeros((400, 2000, 3), np.uint8)
    bgr, scale = scaled_to(image, max_width=1000)
    assert bgr.shape == (200, 1000, 3) and scale == 0.5  # an exact 2:1, INTER_AREA
    det = Detection("car", 1, 0.8, (200.0, 100.0, 600.0, 380.0), track_id=42)
    draw_detections(bgr, [det], scale)
    assert tuple(bgr[120, 100]) == class_colour_bgr(1)  # left edge x=100 in the scaled frame
    assert tuple(bgr[120, 150]) == (0, 0, 0)
    assert _detection_json(det)["track_id"] == 42
    assert "track_id" not in _detection_json(Detection("car", 1, 0.8, (0, 0, 1, 1)))


def test_zones_and_lines_in_fractions_or_pixels_of_frame_size_scale_with_the_frame() -> None:
    fractions = CameraAnalyticsConfig(zones=[{"name": "door", "points": [[0.1, 0.2], [0.5, 0.2], [0.5, 0.8]]}],
                                      lines=[{"name": "gate", "start": [0.75, 0.1], "end": [0.75, 0.9]}])
    bgr = np.zeros((100, 200, 3), np.uint8)
    draw_regions(bgr, fractions, 200, 100, 1.0)
    assert tuple(bgr[20, 60]) == ZONE_BGR  # top edge of the zone: y = 0.2 * 100, x in 20..100
    assert tuple(bgr[50, 150]) == LINE_BGR  # x = 0.75 * 200
    assert tuple(bgr[40, 90]) == (0, 0, 0)  # inside the zone: not filled

    # pixels of a 640x480 frame_size on a 1280x960 source drawn at half size: the same place as fractions
    pixels = CameraAnalyticsConfig(frame_size=(640, 480), zones=[{"name": "shed", "points": [[40, 220], [300, 220], [300, 480], [40, 480]]}],
                                   lines=[{"name": "path", "start": [400, 150], "end": [400, 480]}])
    bgr = np.zeros((480, 640, 3), np.uint8)
    draw_regions(bgr, pixels, 1280, 960, 0.5)
    assert tuple(bgr[300, 400]) == LINE_BGR and tuple(bgr[220, 150]) == ZONE_BGR and tuple(bgr[300, 150]) == (0, 0, 0)

    untouched = np.zeros((100, 200, 3), np.uint8)
    draw_regions(untouched, CameraAnalyticsConfig(), 200, 100, 1.0)  # no rules: nothing drawn
    assert not untouched.any()
