"""`pipeline bench --detections-per-frame K`: the model's detections plus K synthetic ones on every
frame of the end-to-end stages, so the bench charges the per-detection host costs (payload encoding,
publishing, tracking when analytics is on) that a real model's boxes bring. The bench model's random
weights find almost none, which flatters those stages.

The boxes are the analytics bench's moving objects (analytics.synthetic_frames: they move, leave and
are replaced, so a tracker works as on real scenes), one sequence per camera, replayed, scaled to the
frame's size. Each frame's are made anew (one Detection each), as the postprocessor makes a real
model's, so that cost is charged too.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, Callable

from pipeline.frame import Detection, FrameDetections
from pipeline.tools.bench.analytics import FRAMES_PER_CAMERA, HEIGHT, WIDTH, synthetic_frames


class AddedDetections:
    """Wraps the daemon's postprocessor (`DaemonOptions.wrap_postprocessor`)."""

    def __init__(self, postprocess: Callable[[Any], list[FrameDetections]], per_frame: int) -> None:
        self._postprocess = postprocess
        self._per_frame = per_frame
        self._lock = threading.Lock()
        self._by_camera: dict[str, list[tuple[Detection, ...]]] = {}

    def __call__(self, result: Any) -> list[FrameDetections]:
        return [replace(fd, detections=fd.detections + self._added(fd)) for fd in self._postprocess(result)]

    def _added(self, fd: FrameDetections) -> tuple[Detection, ...]:
        sequence = self._by_camera.get(fd.camera_id)
        if sequence is None:
            with self._lock:
                sequence = self._by_camera.get(fd.camera_id)
                if sequence is None:
                    seed = len(self._by_camera) + 1
                    frames = synthetic_frames(fd.camera_id, self._per_frame, FRAMES_PER_CAMERA, seed)
                    sequence = self._by_camera[fd.camera_id] = [f.detections for f in frames]
        detections = sequence[fd.index % len(sequence)]
        sx, sy = fd.width / WIDTH, fd.height / HEIGHT
        return tuple(replace(d, box=_clipped(d.box, sx, sy, fd.width, fd.height)) for d in detections)


def _clipped(box: tuple[float, float, float, float], sx: float, sy: float, w: int, h: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    x1, x2 = min(max(x1 * sx, 0.0), w - 2.0), min(max(x2 * sx, 0.0), float(w))
    y1, y2 = min(max(y1 * sy, 0.0), h - 2.0), min(max(y2 * sy, 0.0), float(h))
    return (x1, y1, max(x2, x1 + 1.0), max(y2, y1 + 1.0))
