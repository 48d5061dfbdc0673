"""Exact counts on a scripted clip (scripts/assets/make_tracking_clips.py: two people walk left to
right, one walks and one bicycle rides right to left, across one zone and one line; no occlusion),
through the real daemon with the demo detector: line counts equal the truth per label and
direction, and every zone event of the truth has exactly one published event of the same kind,
zone and (mapped) track, and no published event is left over."""
from __future__ import annotations

from collections import Counter

import yaml

from pipeline.analytics.stage import camera_rules
from pipeline.config import parse_config
from pipeline.tools.evaluate.command import collect_messages
from pipeline.tools.evaluate.tracking_metrics import load_truth_tracks, track_correspondence, true_events
from tests.support.daemon_harness import REPO, free_tcp_endpoint


def demo_analytics() -> dict:
    """The demo config's tracker settings (chosen on the demo clips, never on these)."""
    return yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["analytics"]

CLIP = REPO / "assets" / "tracking" / "scripted_640x480"
RULES = {"zones": [{"name": "middle", "points": [[0.3, 0.4], [0.6, 0.4], [0.6, 1.0], [0.3, 1.0]]}],
         "lines": [{"name": "half", "start": [0.5, 0.3], "end": [0.5, 1.0]}]}  # forward: right to left


def test_scripted_clip_counts_and_zone_events_exactly() -> None:
    model = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["model"]
    model.update(path=str(REPO / "assets/demo/detector.onnx"), labels=str(REPO / "assets/demo/labels.txt"))
    doc = {"cameras": [{"id": "walk", "url": f"{CLIP}.mp4", "analytics": RULES}], "model": model,
           "analytics": demo_analytics(), "publish": {"bind": free_tcp_endpoint()}, "metrics": {"bind": None}}
    cfg = parse_config(yaml.safe_dump(doc), source="scripted.yaml", base=REPO)
    events: dict[str, list[dict]] = {}
    dets = collect_messages(cfg, events)["walk"]
    truth = load_truth_tracks(f"{CLIP}.jsonl")
    assert len(dets) == len(truth)

    expected, true_counts = true_events(truth, 640, 480, *camera_rules(cfg.cameras[0].analytics))
    lines = {k: n for k, n in true_counts.items() if k[0] == "half"}
    assert lines == {("half", "person", "backward"): 2, ("half", "person", "forward"): 1,
                     ("half", "bicycle", "forward"): 1}, "the script itself"
    published = [e for m in events.get("walk", []) for e in m["events"]]
    assert Counter((e["line"], e["label"], e["direction"]) for e in published if e["type"] == "line_cross") == \
        Counter((ev.line, ev.label, ev.direction) for _, ev in expected if ev.kind == "line_cross")

    to_true = track_correspondence(truth, dets)
    want = Counter((ev.kind, ev.zone, ev.track_id) for _, ev in expected if ev.zone)
    got = Counter((e["type"], e["zone"], to_true.get(e["track_id"])) for e in published if e["zone"])
    assert want == got
    assert sum(want.values()) == 8 and set(want.values()) == {1}  # 4 objects, each in and out once
