"""Annotation of preview frames: boxes, labels, scores, track ids, zones and lines (OpenCV, BGR)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import cv2
import numpy as np

if TYPE_CHECKING:
    from pipeline.config.analytics import CameraAnalyticsConfig
    from pipeline.frame import Detection

# One colour per class id (BGR), saturated so a box stands out from the picture and survives JPEG.
PALETTE_BGR: tuple[tuple[int, int, int], ...] = (
    (0, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0), (0, 128, 255), (255, 255, 0),
    (128, 0, 255), (0, 0, 255), (255, 0, 0), (128, 255, 0),
)
ZONE_BGR = (255, 200, 0)
LINE_BGR = (0, 200, 255)
BOX_THICKNESS = 2


def class_colour_bgr(class_id: int) -> tuple[int, int, int]:
    return PALETTE_BGR[class_id % len(PALETTE_BGR)]


def class_colour_rgb(class_id: int) -> tuple[int, int, int]:
    b, g, r = class_colour_bgr(class_id)
    return r, g, b


def scaled_to(image_rgb: np.ndarray, max_width: int) -> tuple[np.ndarray, float]:
    """The picture as BGR, no wider than max_width, and the factor source pixels were scaled by
    (scaled first: the colour conversion then runs on fewer pixels)."""
    width = image_rgb.shape[1]
    scale = 1.0
    if width > max_width:
        scale = max_width / width
        size = (max_width, max(1, round(image_rgb.shape[0] * scale)))
        # INTER_AREA is the right filter for shrinking, but slow at non-integer ratios
        interpolation = cv2.INTER_AREA if width % max_width == 0 else cv2.INTER_LINEAR
        image_rgb = cv2.resize(image_rgb, size, interpolation=interpolation)
    return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), scale


def draw_detections(bgr: np.ndarray, detections: Iterable[Detection], scale: float) -> None:
    """Boxes in source pixels (scaled by `scale`), with "label score" and "#track" when the
    detection has a track id (analytics.tracking on)."""
    for det in detections:
        colour = class_colour_bgr(det.class_id)
        x1, y1, x2, y2 = (int(round(v * scale)) for v in det.box)
        cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, BOX_THICKNESS)
        text = f"{det.label} {det.score:.2f}" + (f" #{det.track_id}" if det.track_id is not None else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else y1 + th + 4  # above the box, inside at the top edge
        cv2.rectangle(bgr, (x1, ty - th - 2), (x1 + tw + 4, ty + base - 1), colour, cv2.FILLED)
        cv2.putText(bgr, text, (x1 + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)


def draw_regions(bgr: np.ndarray, rules: CameraAnalyticsConfig, src_width: int, src_height: int,
                 scale: float) -> None:
    """A camera's zones (closed polygons) and lines (cameras[i].analytics), named, over a frame of
    src_width x src_height drawn at `scale`. The rules' points are fractions of the frame, or pixels of
    their frame_size: through fractions() they land where the analytics stage counts them."""
    size = np.array([src_width * scale, src_height * scale], np.float64)
    for zone in rules.zones:
        pts = np.rint(rules.fractions(zone.points) * size).astype(np.int32)
        cv2.polylines(bgr, [pts], True, ZONE_BGR, 2, cv2.LINE_AA)
        _name(bgr, zone.name, pts[0], ZONE_BGR)
    for line in rules.lines:
        pts = np.rint(rules.fractions([line.start, line.end]) * size).astype(np.int32)
        cv2.polylines(bgr, [pts], False, LINE_BGR, 2, cv2.LINE_AA)
        _name(bgr, line.name, pts[0], LINE_BGR)


def _name(bgr: np.ndarray, name: str, at: np.ndarray, colour: tuple[int, int, int]) -> None:
    cv2.putText(bgr, name, (int(at[0]) + 3, max(12, int(at[1]) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1,
                cv2.LINE_AA)


def encode_jpeg(bgr: np.ndarray, quality: int) -> bytes:
    """OpenCV's libjpeg-turbo: as fast as simplejpeg and PyTurboJPEG here (scripts/preview_jpeg_bench.py)
    and already a dependency."""
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
