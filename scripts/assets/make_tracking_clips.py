"""Render the held-out tracking clips (assets/tracking/): small H.264 clips with exact per-frame
ground truth including each object's identity, for the tracking accuracy test and docs; and one
scripted clip (scripted_640x480: four objects on fixed paths across one zone and one line, for
the exact count and 1:1 zone event tests).

    python3 scripts/assets/make_tracking_clips.py [--out assets/tracking]

Seeds 9201 and 9202 are used nowhere else: not for training (the trainer uses seeds >= 1,000,000)
and not for the demo clips (9037, 9048, 9060). Same renderer, rules and checks as the demo clips
(scripts/assets/make_demo_assets.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_scenes  # noqa: E402
from make_demo_assets import DemoClip, decode_rgb, make_clip, render_clip  # noqa: E402

TRACKING_CLIPS = (
    DemoClip("heldout_a_640x480", 9201, 640, 480, 10, 200, 200_000, 24, "vtest"),
    DemoClip("heldout_b_640x480", 9202, 640, 480, 10, 200, 200_000, 24, "procedural"),
)


SCRIPTED = DemoClip("scripted_640x480", 9203, 640, 480, 10, 80, 300_000, 4, "vtest")
# (label, view, ground-contact y, x at frame 0, px per frame, size): A and B walk left to right,
# C walks and D rides right to left; no two of them ever overlap.
SCRIPTED_PATHS = (("person", "person_side", 300.0, -40.0, 12.0, 150.0),
                  ("person", "person_side", 380.0, -240.0, 12.0, 150.0),
                  ("person", "person_side", 460.0, 680.0, -12.0, 150.0),
                  ("bicycle", "bicycle", 420.0, 900.0, -12.0, 150.0))


def scripted_plan(backdrop: np.ndarray) -> demo_scenes.ClipPlan:
    rng = np.random.default_rng(SCRIPTED.seed)
    background = demo_scenes.plan_clip(SCRIPTED.seed, SCRIPTED.width, SCRIPTED.height, SCRIPTED.fps, 1, backdrop,
                                       n_tracks=0, background=SCRIPTED.background).background
    tracks = tuple(demo_scenes.Track(label, view, x0, y, vx, 0.0, size, 0.0, 1 if vx > 0 else -1, 0.0,
                                     2 * np.pi / SCRIPTED.fps if label == "person" else abs(vx) / (0.1 * size),
                                     demo_scenes._random_look(rng, label), 0.5 * size, 2 * size)
                   for label, view, y, x0, vx, size in SCRIPTED_PATHS)
    identity = np.tile(np.arange(256, dtype=np.uint8), (3, 1))
    look = demo_scenes.CameraLook(noise_sigma=1.5, exposure=0.5, defocus_sigma=0.0, lut=identity, flicker=0.0)
    return demo_scenes.ClipPlan(SCRIPTED.seed, SCRIPTED.width, SCRIPTED.height, SCRIPTED.fps, SCRIPTED.n_frames,
                                background, (), tracks, look)


def make_scripted_clip(out_dir: Path, backdrop: np.ndarray) -> None:
    plan = scripted_plan(backdrop)
    mp4, truth = render_clip(SCRIPTED, plan, out_dir)
    n = sum(1 for _ in decode_rgb(mp4))
    if n != SCRIPTED.n_frames:
        raise SystemExit(f"{mp4}: decoder returned {n} frames, ground truth has {SCRIPTED.n_frames}")
    print(f"{mp4.name}: {n} frames, {len(plan.tracks)} tracks, {sum(len(o) for o in truth)} boxes, "
          f"{mp4.stat().st_size / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("assets/tracking"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    backdrop = demo_scenes.load_vtest_backdrop()
    stats = []
    for clip in TRACKING_CLIPS:
        s = make_clip(clip, args.out, backdrop)
        stats.append(s)
        print(f"{s['file']}: {s['frames']} frames, {s['tracks']} tracks, {s['objects']} boxes, "
              f"{(args.out / s['file']).stat().st_size / 1e6:.2f} MB")
    make_scripted_clip(args.out, backdrop)
    (args.out / "stats.json").write_text(json.dumps({"clips": stats}, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
