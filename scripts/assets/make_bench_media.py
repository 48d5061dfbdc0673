"""Camera-like benchmark clips: 1080p30 and 720p30, H.264 and HEVC, at camera bit rates.

    python3 scripts/assets/make_bench_media.py [--out .cache/bench-media] [--seconds 10] [--fps 30]

Writes h264_1080p30.mp4, hevc_1080p30.mp4, h264_720p30.mp4, hevc_720p30.mp4 and manifest.json (the
measured bit rate of each file). Not committed: the folder is git-ignored; re-run the script instead.

Content: one procedurally planned street scene from scripts/assets/demo_scenes.py (the real vtest.avi street
as backdrop, 16 walking people, cars and bicycles with motion blur, sensor noise, a tone curve), rendered
at 1920x1080 and downscaled to 1280x720 for the 720p clips, so all four clips show the same scene. The
noise and motion keep the encoder busy at the target rate, as a real camera's stream does (static
test patterns compress to almost nothing and decode unrealistically fast).

Encoding mimics an IP camera: constant-ish bit rate (VBV maxrate = target, 2 s buffer), a 1 s GOP and
no B-frames; 4 Mbit/s at 1080p30 and 2 Mbit/s at 720p30 for both codecs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_scenes  # noqa: E402

SCENE_SEED = 7001
SCENE_TRACKS = 16
NOISE_SIGMA = 2.0  # grey levels of per-pixel sensor noise: a typical daylight CCTV camera
SIZES = {"1080p": (1920, 1080, 4_000_000), "720p": (1280, 720, 2_000_000)}
CODECS = {"h264": "libx264", "hevc": "libx265"}


@dataclasses.dataclass
class Output:
    """One clip being written."""

    name: str
    size: str
    codec: str
    path: Path
    container: av.container.OutputContainer
    stream: av.video.stream.VideoStream
    bit_rate: int
    frame_time_base: Fraction


def open_output(out_dir: Path, codec: str, size: str, fps: int) -> Output:
    width, height, bit_rate = SIZES[size]
    name = f"{codec}_{size}{fps}"
    path = out_dir / f"{name}.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream(CODECS[codec], rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.bit_rate = bit_rate
    stream.time_base = Fraction(1, fps)
    vbv = {"maxrate": str(bit_rate), "bufsize": str(2 * bit_rate), "g": str(fps)}
    if codec == "h264":
        stream.options = {**vbv, "preset": "veryfast", "bf": "0", "profile": "high", "threads": "2"}
    else:
        stream.options = {**vbv, "preset": "veryfast",
                          "x265-params": f"bframes=0:keyint={fps}:min-keyint={fps}:log-level=error:pools=2"}
    return Output(name, size, codec, path, container, stream, bit_rate, Fraction(1, fps))


def encode(out: Output, rgb: np.ndarray | None, k: int) -> None:
    if rgb is None:  # flush
        for packet in out.stream.encode(None):
            out.container.mux(packet)
        out.container.close()
        return
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame.pts = k
    frame.time_base = out.frame_time_base  # not stream.time_base: the muxer changes that at the header
    for packet in out.stream.encode(frame):
        out.container.mux(packet)


def probe(path: Path) -> dict:
    """Frame count, duration and bit rate as a decoder sees the file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.demux(stream) if _.size)
        fps = float(stream.average_rate)
        codec = stream.codec_context.name
        width, height = stream.width, stream.height
    seconds = frames / fps
    return {"file": path.name, "codec": codec, "width": width, "height": height, "fps": fps, "frames": frames,
            "seconds": round(seconds, 3), "mbit_per_s": round(path.stat().st_size * 8 / seconds / 1e6, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".cache/bench-media"))
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10 s)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--codecs", default="h264,hevc", help="comma-separated subset of h264,hevc")
    parser.add_argument("--sizes", default="1080p,720p", help="comma-separated subset of 1080p,720p")
    args = parser.parse_args()
    codecs = [c for c in args.codecs.split(",") if c]
    sizes = [s for s in args.sizes.split(",") if s]
    bad = [c for c in codecs if c not in CODECS] + [s for s in sizes if s not in SIZES]
    if bad:
        raise SystemExit(f"unknown codec/size {', '.join(bad)} (codecs: h264, hevc; sizes: 1080p, 720p)")
    args.out.mkdir(parents=True, exist_ok=True)
    n_frames = max(1, int(round(args.seconds * args.fps)))
    width, height, _ = SIZES["1080p"]
    plan = demo_scenes.plan_clip(SCENE_SEED, width, height, args.fps, n_frames, demo_scenes.load_vtest_backdrop(),
                                 n_tracks=SCENE_TRACKS, background="vtest")
    # a steady sensor-noise level and a sharp lens: the seed's random camera look varies too much
    plan = dataclasses.replace(plan, camera=dataclasses.replace(plan.camera, noise_sigma=NOISE_SIGMA,
                                                                 defocus_sigma=0.0))
    outputs = [open_output(args.out, c, s, args.fps) for s in sizes for c in codecs]
    started = time.monotonic()
    for k in range(n_frames):
        full, _ = demo_scenes.render_frame(plan, k)
        scaled = {"1080p": full}
        if "720p" in sizes:
            scaled["720p"] = cv2.resize(full, SIZES["720p"][:2], interpolation=cv2.INTER_AREA)
        for out in outputs:
            encode(out, scaled[out.size], k)
        if k % args.fps == args.fps - 1:
            print(f"  {k + 1}/{n_frames} frames ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    for out in outputs:
        encode(out, None, n_frames)
    manifest = {"scene_seed": SCENE_SEED, "noise_sigma": NOISE_SIGMA, "clips": []}
    for out in outputs:
        info = probe(out.path) | {"target_mbit_per_s": out.bit_rate / 1e6}
        manifest["clips"].append(info)
        print(f"wrote {out.path}: {info['width']}x{info['height']} {info['codec']} @{info['fps']:g} fps, "
              f"{info['frames']} frames, {info['mbit_per_s']:.2f} Mbit/s (target {out.bit_rate / 1e6:g})")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
