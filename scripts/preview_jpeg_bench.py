"""JPEG encoders for the preview (pipeline/preview/): simplejpeg vs PyTurboJPEG vs OpenCV on real
demo frames, one thread, RGB uint8 in, bytes out, same quality and 4:2:0 chroma (OpenCV's
default; simplejpeg defaults to 4:4:4, PyTurboJPEG to 4:2:2). Prints one line per encoder.

    python scripts/preview_jpeg_bench.py [--quality 75] [--seconds 2]
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import time
from pathlib import Path

import av
import cv2
import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "demo"
CLIPS = ("street_1280x720.mp4", "plaza_768x576.mp4", "yard_640x480.mp4")


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise RuntimeError(f"{path}: no frame")


def encoders(quality: int) -> dict:
    import simplejpeg
    import turbojpeg

    tj = turbojpeg.TurboJPEG()
    return {
        "simplejpeg": lambda img: simplejpeg.encode_jpeg(img, quality=quality, colorspace="RGB",
                                                          colorsubsampling="420"),
        "PyTurboJPEG": lambda img: tj.encode(img, quality=quality, pixel_format=turbojpeg.TJPF_RGB,
                                            jpeg_subsample=turbojpeg.TJSAMP_420),
        # OpenCV takes BGR: the channel swap is part of its cost here
        "opencv": lambda img: cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                                           [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quality", type=int, default=75)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# commit {commit}, {platform.processor() or platform.machine()}, quality {args.quality}, 1 thread")
    for clip in CLIPS:
        img = np.ascontiguousarray(first_frame(ASSETS / clip))
        for name, encode in encoders(args.quality).items():
            encode(img)  # warm up
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                out = encode(img)
                n += 1
            ms = (time.perf_counter() - t0) / n * 1000
            print(f"{clip:24s} {name:12s} {ms:6.2f} ms/frame  {len(out) / 1024:6.1f} KiB")


if __name__ == "__main__":
    main()
