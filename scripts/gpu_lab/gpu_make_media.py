"""Camera-like 1080p30 H.264 (and HEVC) test clips for the GPU runs: real street footage
(OpenCV's vtest.avi, 768x576) scaled to 1920x1080 with mild sensor noise, encoded with libx264 /
libx265 at ~4 Mbit/s (CBR-ish), GOP 30. Not NVENC: the GPU host has no encoder.

    python3 scripts/gpu_lab/gpu_make_media.py OUT_DIR [--seconds 10] [--hevc]
"""
from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

FOOTAGE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def footage_frames(count: int, width: int, height: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(FOOTAGE))
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:  # loop the 795-frame source
            cap.release()
            cap = cv2.VideoCapture(str(FOOTAGE))
            continue
        rgb = cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
        frames.append(rgb)
    cap.release()
    return frames


def encode(path: Path, frames: list[np.ndarray], codec: str, fps: int, bitrate: str) -> None:
    rng = np.random.default_rng(1)
    encoder = {"h264": "libx264", "hevc": "libx265"}[codec]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(encoder, rate=Fraction(fps))
        h, w = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        options = {"preset": "veryfast", "b": bitrate, "maxrate": bitrate, "bufsize": bitrate, "g": str(fps)}
        if codec == "hevc":
            options["x265-params"] = "log-level=error"
        stream.options = options
        stream.bit_rate = int(bitrate.rstrip("M")) * 1_000_000
        for img in frames:
            noisy = np.clip(img.astype(np.int16) + rng.integers(-3, 4, img.shape, dtype=np.int16), 0, 255)
            for p in stream.encode(av.VideoFrame.from_ndarray(noisy.astype(np.uint8), format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--bitrate", default="4M")
    ap.add_argument("--hevc", action="store_true", help="also write the HEVC version")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    frames = footage_frames(int(args.seconds * args.fps), 1920, 1080)
    for codec in ("h264", "hevc") if args.hevc else ("h264",):
        path = args.out_dir / f"cam1080_{codec}.mp4"
        encode(path, frames, codec, args.fps, args.bitrate)
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            mbit = path.stat().st_size * 8 / args.seconds / 1e6
            print(f"{path}: {s.codec_context.name} {s.width}x{s.height} {s.frames} frames, {mbit:.2f} Mbit/s")


if __name__ == "__main__":
    main()
