"""Choose the tracker's score thresholds for a detector on clips with true identities.

    python3 scripts/tracking_sweep.py [--clips demo|tracking] [--config configs/demo.yaml]

Runs the daemon once over the clips (the config's model, every frame, a real subscriber), keeps the
published detections, then re-runs the tracker (pipeline/analytics/tracker.py) over them for each
(high_score, new_track_score, lost_frames) and scores it with motmetrics. Prints the settings by
their worst clip's MOTA. configs/demo.yaml's thresholds are the best row on `--clips demo`; the
held-out clips (`--clips tracking`) are for checking that choice, not for making it.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import yaml

from pipeline.analytics.tracker import ByteTracker, TrackerSettings
from pipeline.config import parse_config
from pipeline.tools.evaluate.command import collect_messages
from pipeline.tools.evaluate.tracking_metrics import load_truth_tracks, score_tracking

REPO = Path(__file__).resolve().parents[1]
CLIPS = {"demo": ("assets/demo", ("street_1280x720", "plaza_768x576", "yard_640x480")),
         "tracking": ("assets/tracking", ("heldout_a_640x480", "heldout_b_640x480"))}


def retrack(messages: list[dict], settings: TrackerSettings) -> list[dict]:
    tracker, out = ByteTracker(settings), []
    for m in sorted(messages, key=lambda m: m["frame"]):
        d = m["detections"]
        ids = tracker.update(np.array([x["box"] for x in d], np.float64).reshape(-1, 4),
                             np.array([x["score"] for x in d], np.float64),
                             np.array([x["class_id"] for x in d], np.int64)).track_ids
        out.append({**m, "detections": [{**x, "track_id": int(i) or None} for x, i in zip(d, ids)]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", choices=sorted(CLIPS), default="demo")
    parser.add_argument("--config", default="configs/demo.yaml", help="its model section is used")
    args = parser.parse_args()
    folder, stems = CLIPS[args.clips]
    doc = yaml.safe_load((REPO / args.config).read_text())
    model = doc["model"]
    model.update(path=str(REPO / "assets/demo/detector.onnx"), labels=str(REPO / "assets/demo/labels.txt"))
    cams = [{"id": s, "url": str(REPO / folder / f"{s}.mp4")}
            for s in stems]
    cfg = parse_config(yaml.safe_dump({"cameras": cams, "model": model, "publish": {"bind": "tcp://127.0.0.1:5591"},
                                       "metrics": {"bind": None}}), source="sweep.yaml", base=REPO)
    messages = collect_messages(cfg)
    truths = {s: load_truth_tracks(REPO / folder / f"{s}.jsonl") for s in stems}
    rows = []
    for high, new, lost in itertools.product((0.5, 0.6, 0.7), (0.6, 0.7, 0.8, 0.9), (15, 30)):
        if new < high:
            continue
        settings = TrackerSettings(high_score=high, new_track_score=new, lost_frames=lost)
        scores = [score_tracking(s, truths[s], retrack(messages[s], settings)) for s in stems]
        rows.append((min(x.mota for x in scores), min(x.idf1 for x in scores), high, new, lost, scores))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    print(f"clips: {', '.join(stems)}; worst clip's MOTA / IDF1, then each clip's MOTA/IDF1/ID switches")
    for mota, idf1, high, new, lost, scores in rows:
        each = "  ".join(f"{x.camera} {x.mota:.3f}/{x.idf1:.3f}/{x.id_switches}" for x in scores)
        print(f"high_score {high}  new_track_score {new}  lost_frames {lost:>2}:  MOTA {mota:.3f}  IDF1 {idf1:.3f}  | {each}")


if __name__ == "__main__":
    main()
