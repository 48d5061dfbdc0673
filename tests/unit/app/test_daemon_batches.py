"""The daemon's per-batch work after postprocess (DetectionsBatch, issue 22): one frame that fails in
analytics or publish costs that frame only, never the rest of its batch."""
from __future__ import annotations

import threading
import time

import zmq

from pipeline.app.daemon import _analytics_work, _postprocess_work, _publish_work, _published_cameras
from pipeline.app.stages import StageShared
from pipeline.frame import (AnalyticsEvent, CameraState, Detection, DetectionsBatch, FrameDetections, FrameEvents,
                            StatusEvent)
from pipeline.observe.metrics import Metrics
from pipeline.publish import Publisher


def fd(camera: str, index: int, score: float = 0.9) -> FrameDetections:
    return FrameDetections(camera, index, index / 25, time.time(), 64, 48,
                           (Detection("car", 1, score, (1.0, 2.0, 30.0, 40.0)),))


def test_analytics_failing_on_one_frame_keeps_the_batch_and_the_other_frames_events() -> None:
    event = AnalyticsEvent("line_cross", 1, "car", 1, None, "gate", "forward", None, (1.0, 2.0, 30.0, 40.0))

    def analytics(frame: FrameDetections):
        if frame.index == 1:
            raise RuntimeError("tracker state broken")
        tracked = FrameDetections(frame.camera_id, frame.index, frame.pts, frame.captured_at, frame.width,
                                  frame.height, tuple(Detection(d.label, d.class_id, d.score, d.box, 7)
                                                      for d in frame.detections))
        return tracked, FrameEvents(frame.camera_id, frame.index, frame.pts, frame.captured_at, (event,), ())

    out = _analytics_work(analytics)(DetectionsBatch((fd("a", 0), fd("b", 1), fd("c", 2))))
    batch, *events = out
    assert isinstance(batch, DetectionsBatch) and batch.camera_ids == ("a", "b", "c")
    assert [d.track_id for f in batch.items for d in f.detections] == [7, None, 7]  # b: untracked, not lost
    assert [e.camera_id for e in events] == ["a", "c"]


def test_a_frame_the_schema_refuses_is_counted_and_the_batch_still_goes_out() -> None:
    metrics = Metrics()
    shared = StageShared(metrics, threading.Event())
    context = zmq.Context()
    try:
        with Publisher(context, "tcp://127.0.0.1:*", 100, 0, metrics) as publisher:
            work = _publish_work(publisher, shared)
            batch = DetectionsBatch((fd("a", 0), fd("a", 1, score=float("nan")), fd("b", 0)))
            assert list(work(batch)) == []
            work(StatusEvent("a", CameraState.UP, time.time(), "receiving frames"))
    finally:
        context.term()
    assert metrics.frames_published.value("a") == 1 and metrics.frames_published.value("b") == 1
    assert metrics.frames_dropped.value("a", "publish_error") == 1
    assert _published_cameras(batch) == ("a", "a", "b")
    assert _published_cameras(StatusEvent("a", CameraState.UP, 0.0)) == ()


def test_postprocess_hands_on_one_batch_or_nothing() -> None:
    work = _postprocess_work(lambda result: list(result))
    assert work([]) == []
    (batch,) = work([fd("a", 0), fd("b", 0)])
    assert batch.camera_ids == ("a", "b")
