"""The analytics stage: track ids into the detections, events after them, live rule changes,
restarts that never reuse ids, and bounded per-camera state under churn."""
from __future__ import annotations

import numpy as np

from pipeline.analytics.stage import Analytics, CameraAnalytics, RuleCount
from pipeline.config import AnalyticsConfig, CameraConfig
from pipeline.frame import Detection, FrameDetections
from pipeline.observe.metrics import Metrics

WHOLE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


def camera(zones: list | None = None) -> CameraConfig:
    return CameraConfig(id="cam", url="synthetic:100x100@10", analytics={"zones": zones or []})


def frame(k: int, boxes: list[tuple[float, float, float, float]]) -> FrameDetections:
    return FrameDetections("cam", k, k / 10, 1e9 + k / 10, 100, 100,
                           tuple(Detection("person", 0, 0.9, b) for b in boxes))


def test_ids_events_rule_changes_and_restarts() -> None:
    metrics = Metrics()
    stage = Analytics(AnalyticsConfig(tracking=True), [camera([{"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}])],
                      metrics)
    out, events = stage(frame(0, [(10, 10, 20, 40)]))
    assert out.detections[0].track_id == 1 and out.detections[0].box == (10, 10, 20, 40)
    assert [e.kind for e in events.events] == ["zone_enter"] and events.counts == ((("left", "person", "enter"), 1),)
    stage.set_rules(camera([{"name": "all", "points": WHOLE}]))  # applied at the next frame, tracks kept
    out, events = stage(frame(1, [(12, 10, 22, 40)]))
    assert out.detections[0].track_id == 1
    assert [(e.kind, e.zone) for e in events.events] == [("zone_enter", "all")]
    stage.reset_camera("cam")
    out, _ = stage(frame(2, [(14, 10, 24, 40)]))
    assert out.detections[0].track_id == 2  # the old track ended; its id is not reused
    assert "tracks 1; all: person enter 2" == stage.status_line("cam")
    # the same, typed, for the preview's /api/cameras (the dropped rule's count went with it)
    assert stage.snapshot("cam") == CameraAnalytics(1, (RuleCount("all", "person", "enter", 2),))
    assert stage.snapshot("no-such-camera") is None and stage.status_line("no-such-camera") is None
    assert metrics.value("pipeline_analytics_events_total", camera="cam", rule="all", label="person", event="enter") == 2
    assert metrics.value("pipeline_analytics_events_total", camera="cam", rule="left", label="person", event="enter") == 1


def test_churn_keeps_camera_state_bounded() -> None:
    cfg = AnalyticsConfig(tracking=True, lost_frames=10)
    stage = Analytics(cfg, [camera([{"name": "all", "points": WHOLE}])])
    rng = np.random.default_rng(0)
    alive: list[list[float]] = []
    for k in range(3000):  # an object appears every frame, walks for 5..15 frames, leaves
        alive = [[x + 1, y, left - 1] for x, y, left in alive if left > 0]
        alive.append([rng.uniform(0, 90), rng.uniform(0, 70), rng.integers(5, 15)])
        stage(frame(k, [(x, y, x + 8, y + 25) for x, y, _ in alive]))
    state = stage._cameras["cam"]
    assert len(state.tracker) <= 15 + 11 and state.counter.tracked() <= len(state.tracker)
    counts = stage.counts("cam")
    assert counts[("all", "person", "enter")] - counts[("all", "person", "exit")] <= len(state.tracker)
