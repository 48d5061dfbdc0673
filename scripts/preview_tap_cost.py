"""What the preview's taps cost the pipeline threads per frame (issue 19), measured on their own:
the frame tap (camera threads) and the detections tap (publish thread), unwatched and watched at
preview.fps against a 25 fps camera. An e2e bench on a shared CPU box cannot resolve costs this small;
this says how small they are.

    python scripts/preview_tap_cost.py [--frames 200000]
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's pipeline, not an installed one

from pipeline.config import PreviewConfig
from pipeline.frame import Detection, Frame, FrameDetections
from pipeline.observe.metrics import Metrics
from pipeline.preview import PreviewService


class Board:
    def snapshot(self) -> list:
        return []


def per_call_us(fn, n: int, repeats: int = 5) -> float:
    """Best of `repeats` (the box is shared: the minimum is the cost, the rest is other work)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (720, 1280, 3), np.uint8)
    frames = [Frame("cam", i, None, 0.0, 1280, 720, image) for i in range(64)]
    det = (Detection("person", 0, 0.9, (10.0, 10.0, 100.0, 200.0)),)
    messages = [FrameDetections("cam", i, None, 0.0, 1280, 720, det) for i in range(64)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# commit {commit}, {platform.machine()}; 1280x720 frames; best of 5")
    service = PreviewService(PreviewConfig(bind="127.0.0.1:0"), Metrics(), Board(), lambda: [])
    service.start()
    try:
        empty = per_call_us(lambda i: (frames[i & 63], messages[i & 63]), args.frames)
        frame_tap = per_call_us(lambda i: service.on_frame(frames[i & 63]), args.frames) - empty
        det_tap = per_call_us(lambda i: service.on_published(messages[i & 63], i), args.frames) - empty
        print(f"unwatched: frame tap {frame_tap:.2f} us/frame (camera thread), detections tap {det_tap:.2f} us/message "
              f"(publish thread)")
        copy_ms = per_call_us(lambda i: image.copy(), 200) / 1000
        print(f"watched: + one host copy of a 720p frame per grab, {copy_ms:.2f} ms (camera thread), at most "
              f"preview.fps times a second per watched camera; drawing and JPEG run on the preview's thread")
    finally:
        service.close()


if __name__ == "__main__":
    main()
