"""Render the held-out demo clips (H.264 mp4) with exact per-frame ground truth (JSON Lines).

    python3 scripts/assets/make_demo_assets.py [--out assets/demo]

Writes <name>.mp4, <name>.jsonl, labels.txt and stats.json. Everything but the mp4 bytes is a
pure function of the seeds below (the encoder's bytes may differ between libx264 versions), so
running it twice prints and writes identical statistics. Each clip is decoded back with PyAV to check
that the k-th decoded frame is the k-th ground-truth line (frame count and pixel agreement).
The demo seeds are never used for training (the trainer uses seeds >= TRAIN_SEED_BASE).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_scenes  # noqa: E402


@dataclass(frozen=True)
class DemoClip:
    name: str
    seed: int
    width: int
    height: int
    fps: int
    n_frames: int
    bit_rate: int
    n_tracks: int
    background: str


# Seeds picked among 60 candidates per clip from the scene plans alone (every class on screen for >= 20 % of
# the object-frames, >= 4 objects per frame on average, nothing standing still), never from detector results.
DEMO_CLIPS = (
    DemoClip("street_1280x720", 9060, 1280, 720, 15, 240, 1_200_000, 30, "vtest"),
    DemoClip("plaza_768x576", 9048, 768, 576, 25, 250, 900_000, 20, "procedural"),
    DemoClip("yard_640x480", 9037, 640, 480, 10, 160, 650_000, 30, "vtest"),
)
MAX_MEAN_ABS_DIFF = 12.0  # decoded vs rendered frame, grey levels: catches any frame misalignment


def encode_h264(frames, path: Path, width: int, height: int, fps: int, bit_rate: int) -> None:
    """Encode an iterable of HxWx3 uint8 RGB frames as H.264 yuv420p at constant fps."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "medium", "g": str(2 * fps), "bf": "0", "threads": "2"}
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = k
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def decode_rgb(path: Path):
    """Yield decoded frames as HxWx3 uint8 RGB in the order a decoder returns them."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def clip_stats(clip: DemoClip, truth: list[list[dict]], n_tracks: int) -> dict:
    per_class = {}
    for label in demo_scenes.CLASSES:
        boxes = np.array([o["box"] for objs in truth for o in objs if o["label"] == label], np.float64).reshape(-1, 4)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        per_class[label] = {
            "objects": int(len(boxes)),
            "mean_box_w": round(float(w.mean()), 3) if len(boxes) else 0.0,
            "mean_box_h": round(float(h.mean()), 3) if len(boxes) else 0.0,
            "min_short_side": int(np.minimum(w, h).min()) if len(boxes) else 0,
        }
    return {"file": f"{clip.name}.mp4", "truth": f"{clip.name}.jsonl", "seed": clip.seed, "width": clip.width,
            "height": clip.height, "fps": clip.fps, "frames": clip.n_frames, "tracks": n_tracks,
            "objects": int(sum(len(o) for o in truth)), "per_class": per_class}


def render_clip(clip: DemoClip, plan: "demo_scenes.ClipPlan", out_dir: Path) -> tuple[Path, list[list[dict]]]:
    """Render the plan's frames, encode them to <name>.mp4 and write the ground truth to <name>.jsonl
    (one line per frame); returns the mp4 path and the truth per frame."""
    truth: list[list[dict]] = []

    def frames():
        for k in range(clip.n_frames):
            image, objects = demo_scenes.render_frame(plan, k)
            truth.append(objects)
            yield image

    mp4 = out_dir / f"{clip.name}.mp4"
    encode_h264(frames(), mp4, clip.width, clip.height, clip.fps, clip.bit_rate)
    with open(out_dir / f"{clip.name}.jsonl", "w") as f:
        for k, objects in enumerate(truth):
            f.write(json.dumps({"frame": k, "objects": objects}) + "\n")
    return mp4, truth


def make_clip(clip: DemoClip, out_dir: Path, backdrop: np.ndarray) -> dict:
    plan = demo_scenes.plan_clip(clip.seed, clip.width, clip.height, clip.fps, clip.n_frames, backdrop,
                                 n_tracks=clip.n_tracks, background=clip.background)
    mp4, truth = render_clip(clip, plan, out_dir)
    # verify: the decoder returns exactly n_frames frames, and frame k matches rendered frame k
    n = 0
    for k, decoded in enumerate(decode_rgb(mp4)):
        if k < clip.n_frames and k % 10 == 0:
            rendered, _ = demo_scenes.render_frame(plan, k)
            diff = float(np.abs(decoded.astype(np.int16) - rendered.astype(np.int16)).mean())
            if diff > MAX_MEAN_ABS_DIFF:
                raise SystemExit(f"{mp4}: decoded frame {k} differs from rendered frame {k} (mean abs diff {diff:.1f})")
        n += 1
    if n != clip.n_frames:
        raise SystemExit(f"{mp4}: decoder returned {n} frames, ground truth has {clip.n_frames}")
    return clip_stats(clip, truth, len(plan.tracks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("assets/demo"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    backdrop = demo_scenes.load_vtest_backdrop()
    (args.out / "labels.txt").write_text("".join(f"{c}\n" for c in demo_scenes.CLASSES))
    stats = {"classes": list(demo_scenes.CLASSES), "clips": []}
    for clip in DEMO_CLIPS:
        s = make_clip(clip, args.out, backdrop)
        stats["clips"].append(s)
        size = (args.out / s["file"]).stat().st_size
        counts = ", ".join(f"{k}={v['objects']} (mean {v['mean_box_w']:.1f}x{v['mean_box_h']:.1f})" for k, v in s["per_class"].items())
        print(f"{s['file']}: {s['width']}x{s['height']} @{s['fps']} fps, {s['frames']} frames, {size / 1e6:.2f} MB, "
              f"{s['tracks']} tracks, {s['objects']} boxes: {counts}")
    (args.out / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out / 'stats.json'}")


if __name__ == "__main__":
    main()
