"""Our ByteTracker against Roboflow's ByteTrack on the same synthetic detections (speed only).
supervision dropped its `ByteTrack` (0.31 has none); it lives on in Roboflow's `trackers` package
(`ByteTrackTracker`, which needs supervision, opencv-python, rich, ...).

    pip install --target /tmp/svlib supervision      # kept out of the project's environment
    pip install --target /tmp/svlib --no-deps trackers rich markdown-it-py mdurl pygments
    PYTHONPATH=.:/tmp/svlib python3 scripts/tracker_library_compare.py [--cameras 20] [--frames 300] [--detections 10]

Frames go round robin over the cameras (one tracker per camera each), as in `pipeline bench --stages
analytics`, without zones or lines. Prints frames per CPU-second for each and supervision's import time.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from pipeline.analytics.tracker import ByteTracker
from pipeline.tools.bench.analytics import synthetic_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--detections", type=int, default=10)
    args = parser.parse_args()
    cams = [f"c{i}" for i in range(args.cameras)]
    data = {c: [(np.array([d.box for d in f.detections]), np.array([d.score for d in f.detections]),
                 np.array([d.class_id for d in f.detections]))
                for f in synthetic_frames(c, args.detections, args.frames, seed=i)] for i, c in enumerate(cams)}
    total = args.cameras * args.frames

    ours = {c: ByteTracker() for c in cams}
    t0 = time.process_time()
    for k in range(args.frames):
        for c in cams:
            ours[c].update(*data[c][k])
    print(f"pipeline ByteTracker: {total / (time.process_time() - t0):8.0f} frames per CPU-second")

    t0 = time.perf_counter()
    import supervision as sv
    import trackers
    print(f"supervision {sv.__version__} + trackers: import {time.perf_counter() - t0:.2f} s")
    theirs = {c: trackers.ByteTrackTracker() for c in cams}
    t0 = time.process_time()
    for k in range(args.frames):
        for c in cams:
            boxes, scores, classes = data[c][k]
            theirs[c].update(sv.Detections(xyxy=boxes.astype(np.float32), confidence=scores, class_id=classes))
    print(f"trackers ByteTrackTracker: {total / (time.process_time() - t0):8.0f} frames per CPU-second")


if __name__ == "__main__":
    main()
