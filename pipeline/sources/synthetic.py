"""Generated frames for tests and benchmarks without media: `synthetic:WIDTHxHEIGHT@FPS`.

Frame i is a pure function of (i, width, height): a fixed gradient with three coloured
rectangles bouncing at different speeds, so consecutive frames differ and runs repeat exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from pipeline.frame import CameraState
from pipeline.sources.base import Ending, Source, register_source
from pipeline.sources.pacing import FramePacer

_URL = re.compile(r"^synthetic:(\d+)x(\d+)@(\d+(?:\.\d+)?)$")
MAX_SIDE = 8192

# (colour RGB, size as a fraction of (width, height), speed in pixels/frame as a fraction of width)
_RECTANGLES = (
    ((230, 40, 40), (0.20, 0.25), (0.011, 0.007)),
    ((40, 200, 60), (0.12, 0.30), (-0.017, 0.013)),
    ((250, 220, 40), (0.30, 0.12), (0.006, -0.019)),
)


@dataclass(frozen=True)
class SyntheticSpec:
    width: int
    height: int
    fps: float


def parse_synthetic_url(url: str) -> SyntheticSpec:
    """`synthetic:1280x720@25` -> SyntheticSpec(1280, 720, 25.0); ValueError with the expected form."""
    m = _URL.match(url.strip())
    if not m:
        raise ValueError(f"bad synthetic url {url!r}: expected synthetic:WIDTHxHEIGHT@FPS, "
                         f"e.g. synthetic:1280x720@25")
    width, height, fps = int(m.group(1)), int(m.group(2)), float(m.group(3))
    if not (2 <= width <= MAX_SIDE and 2 <= height <= MAX_SIDE):
        raise ValueError(f"bad synthetic url {url!r}: width and height must be 2..{MAX_SIDE}")
    if not 0 < fps <= 1000:
        raise ValueError(f"bad synthetic url {url!r}: fps must be in (0, 1000]")
    return SyntheticSpec(width, height, fps)


def _bounce(travelled: float, span: int) -> int:
    """Position after travelling `travelled` pixels back and forth along 0..span."""
    if span <= 0:
        return 0
    t = travelled % (2 * span)
    return int(t if t <= span else 2 * span - t)


class SyntheticPattern:
    """Renders frame `index` of the moving-rectangles pattern (a new array every call)."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        x = np.linspace(0, 160, width, dtype=np.float32)[None, :]
        y = np.linspace(0, 160, height, dtype=np.float32)[:, None]
        background = np.empty((height, width, 3), dtype=np.uint8)
        background[..., 0] = (x * 0.5 + y * 0.2).astype(np.uint8)
        background[..., 1] = (y * 0.6).astype(np.uint8)
        background[..., 2] = (96 + x * 0.4).astype(np.uint8)
        self._background = background

    def render(self, index: int) -> np.ndarray:
        image = self._background.copy()
        w, h = self.width, self.height
        for k, (colour, (fw, fh), (vx, vy)) in enumerate(_RECTANGLES):
            rw, rh = max(1, int(w * fw)), max(1, int(h * fh))
            # Each rectangle starts somewhere else so they do not all begin in the corner.
            x = _bounce(abs(vx) * w * index + k * w * 0.3, w - rw)
            y = _bounce(abs(vy) * w * index + k * h * 0.3, h - rh)
            if vx < 0:
                x = w - rw - x
            if vy < 0:
                y = h - rh - y
            image[y:y + rh, x:x + rw] = colour
        return image


@register_source
class SyntheticSource(Source):
    """Endless generated frames; paced at FPS when `realtime`, else as fast as the sink accepts."""

    type_key = "synthetic"

    def _stream(self) -> Ending:
        try:
            spec = parse_synthetic_url(self.camera.url)
        except ValueError as exc:
            return Ending(CameraState.DOWN, str(exc))
        pattern = SyntheticPattern(spec.width, spec.height)
        pacer = FramePacer(self._stop, spec.fps) if self.camera.realtime else None
        index = 0
        while not self._stop.is_set():
            pts = index / spec.fps
            image = pattern.render(index)
            if pacer is not None and not pacer.wait(pts):
                break
            if not self._deliver(image, pts):
                break
            index += 1
        return Ending(CameraState.STOPPED, "stop requested")
