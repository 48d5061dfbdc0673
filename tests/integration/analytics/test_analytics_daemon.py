"""Tracking, zones and lines in the real daemon (subprocess, real ZeroMQ subscriber, the demo
detector on a real clip): track ids in every detections message, events on evt/<camera>/ that
follow their JSON Schema, and a SIGHUP that changes the zones and lines without restarting the
camera (no seq gap, no status change, track ids carried over)."""
from __future__ import annotations

import signal
from pathlib import Path

import jsonschema
import yaml

from pipeline.publish.messages import load_schema
from tests.support.daemon_harness import REPO, DaemonProcess, write_config

DEMO = REPO / "assets" / "demo"
DETECTIONS = jsonschema.Draft202012Validator(load_schema("detections"))
EVENTS = jsonschema.Draft202012Validator(load_schema("events"))
LOWER_HALF = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]
UPPER_HALF = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5]]


def demo_model() -> dict:
    model = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["model"]
    return {**model, "path": str(DEMO / "detector.onnx"), "labels": str(DEMO / "labels.txt")}


def of(messages: list, prefix: str) -> list[dict]:
    return [m for t, m in messages if t.startswith(prefix)]


def test_tracking_events_and_live_zone_change(tmp_path: Path) -> None:
    """Camera threads here; the held-out accuracy test (test_tracking_accuracy.py) runs decode workers."""
    cam = {"id": "yard", "url": str(DEMO / "yard_640x480.mp4"), "loop": True,
           "analytics": {"zones": [{"name": "lower", "points": LOWER_HALF}],
                         "lines": [{"name": "middle", "start": [0.5, 0.0], "end": [0.5, 1.0]}]}}
    cfg = write_config(tmp_path / "cfg.yaml", [cam], demo_model(), analytics={"tracking": True},
                       scheduler={"max_batch": 4, "max_wait_ms": 30})
    doc = yaml.safe_load(cfg.read_text())
    with DaemonProcess(cfg) as d:
        assert d.pump_until(lambda ms: len(of(ms, "det/yard/")) >= 30 and sum(
            e["type"] == "line_cross" for m in of(ms, "evt/yard/") for e in m["events"]) >= 2, 90), d.stderr_path.read_text()
        before = of(d.messages, "evt/yard/")
        assert {e["zone"] for m in before for e in m["events"]} >= {"lower"}

        cam["analytics"] = {"zones": [{"name": "upper", "points": UPPER_HALF, "classes": ["person"]}]}
        doc["cameras"] = [cam]
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
        d.proc.send_signal(signal.SIGHUP)
        log = d.wait_for_log("reload applied", 30)
        assert "0 restarted, 0 unchanged, 1 with new zones/lines (yard)" in log
        applied_at = len(d.messages)
        assert d.pump_until(lambda ms: sum(e["zone"] == "upper" for m in of(ms[applied_at:], "evt/yard/")
                                           for e in m["events"]) >= 3, 60), d.stderr_path.read_text()
        d.terminate()
        run = d.finish(timeout=30)
    assert run.returncode == 0, run.stderr

    dets = of(run.messages, "det/yard/")
    for m in dets[:50] + dets[-50:]:
        DETECTIONS.validate(m)
    assert [m["seq"] for m in dets] == list(range(len(dets))), "a seq gap: the camera restarted or lost messages"
    assert [m["state"] for m in of(run.messages, "status/yard/")] in (["starting", "up", "stopped"], ["up", "stopped"])
    tracked = [d for m in dets for d in m["detections"] if d["track_id"] is not None]
    assert len(tracked) >= 0.9 * sum(len(m["detections"]) for m in dets)
    # the same objects keep their ids across the reload: ids seen just before it are seen just after
    first_upper = next(i for i, m in enumerate(run.messages[applied_at:], applied_at)
                       if m[0] == "evt/yard/" and any(e["zone"] == "upper" for e in m[1]["events"]))
    frame_at = run.messages[first_upper][1]["frame"]
    ids_before = {d["track_id"] for m in dets if frame_at - 8 <= m["frame"] < frame_at - 3 for d in m["detections"]}
    ids_after = {d["track_id"] for m in dets if frame_at <= m["frame"] < frame_at + 5 for d in m["detections"]}
    assert ids_before & ids_after - {None}, (ids_before, ids_after)

    events = of(run.messages, "evt/yard/")
    for m in events:
        EVENTS.validate(m)
    assert [m["seq"] for m in events] == list(range(len(events)))
    after = [m for m in events if m["frame"] >= frame_at]
    assert after and all(e["zone"] == "upper" and e["label"] == "person" for m in after for e in m["events"])
    assert set(after[-1]["counts"]) == {"upper"}  # the removed zone and line no longer count
    kinds = {e["type"] for m in events for e in m["events"]}
    assert {"zone_enter", "zone_exit", "line_cross"} <= kinds, kinds
    # the daemon's summary has the same running counts as the last events message
    summary = [ln for ln in run.stderr.splitlines() if "summary yard:" in ln and " analytics tracks " in ln]
    assert len(summary) == 1, run.stderr
    enters = after[-1]["counts"]["upper"]["person"]["enter"]
    assert f"upper: person enter {enters}" in summary[0], summary
