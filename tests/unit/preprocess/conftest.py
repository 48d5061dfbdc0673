"""Fixtures for the preprocess tests: frames made from real footage."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np
import pytest

from pipeline.frame import Frame

FOOTAGE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@pytest.fixture(scope="session")
def street_scene() -> np.ndarray:
    """A real decoded frame (RGB), or a synthetic textured one where opencv-doc is missing."""
    if FOOTAGE.exists():
        with av.open(str(FOOTAGE)) as container:
            for frame in container.decode(video=0):
                return frame.to_ndarray(format="rgb24")
    rng = np.random.default_rng(7)
    coarse = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
    return cv2.resize(coarse, (768, 576), interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def make_frame(street_scene: np.ndarray) -> Callable[..., Frame]:
    """make_frame(width, height, camera_id=..., noise=...) -> Frame with a width x height RGB image:
    the street scene resized, plus noise (noise is the worst case for interpolation differences)."""
    rng = np.random.default_rng(11)
    counter = iter(range(10**6))

    def make(width: int, height: int, camera_id: str = "cam", noise: int = 12) -> Frame:
        image = cv2.resize(street_scene, (width, height), interpolation=cv2.INTER_AREA)
        if noise:
            jitter = rng.integers(-noise, noise + 1, image.shape)
            image = np.clip(image.astype(np.int16) + jitter, 0, 255).astype(np.uint8)
        return Frame(camera_id=camera_id, index=next(counter), pts=None, captured_at=0.0,
                     width=width, height=height, image=image)

    return make
