"""`pipeline eval`: run the daemon on file cameras, collect what it publishes through a real
ZeroMQ subscriber, and score it against ground truth."""
from __future__ import annotations

import sys
import threading
from collections import defaultdict
from dataclasses import dataclass

from pipeline.config import MetricsConfig, PipelineConfig
from pipeline.tools.evaluate.detection_metrics import CameraScore, load_truth, score_camera
from pipeline.tools.evaluate.tracking_metrics import (MotmetricsMissing, TrackingScore, count_lines,
                                                      load_truth_tracks, published_event_counts, score_tracking,
                                                      true_event_counts)
from pipeline.publish.subscriber import Subscriber, connect_url


def collect_messages(cfg: PipelineConfig, events: dict[str, list[dict]] | None = None) -> dict[str, list[dict]]:
    """Run the daemon in this process until every camera has ended; return detections per camera
    (and fill `events`, when given, with each camera's analytics events messages)."""
    from pipeline.app.daemon import Daemon, DaemonOptions

    # Every frame must be scored: read files as fast as the pipeline takes them (no drops).
    cams = [c.model_copy(update={"realtime": False, "loop": False}) for c in cfg.cameras]
    cfg = cfg.model_copy(update={"cameras": cams, "metrics": MetricsConfig(bind=None)})
    daemon = Daemon(cfg, DaemonOptions(status_interval_s=0, wait_for_subscribers=1))
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            daemon.start()
            daemon.run(stop)
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)

    messages: dict[str, list[dict]] = defaultdict(list)
    def keep(got: tuple[str, dict]) -> None:
        topic, message = got
        if topic.startswith("det/"):
            messages[message["camera"]].append(message)
        elif events is not None:
            events.setdefault(message["camera"], []).append(message)

    kinds = ("det",) if events is None else ("det", "evt")
    with Subscriber(connect_url(cfg.publish.bind), kinds=kinds) as sub:
        thread = threading.Thread(target=run, name="eval-daemon", daemon=True)
        thread.start()
        while thread.is_alive():
            got = sub.recv(timeout=0.2)
            if got is not None:
                keep(got)
        while (got := sub.recv(timeout=0.2)) is not None:
            keep(got)
    if failure:
        raise failure[0]
    return messages


def run_evaluation(cfg: PipelineConfig, truths: dict[str, str], iou_threshold: float = 0.5) -> list[CameraScore]:
    messages = collect_messages(cfg)
    return [score_camera(cam, load_truth(path), messages.get(cam, []), iou_threshold)
            for cam, path in truths.items()]


@dataclass(frozen=True)
class CameraEvaluation:
    detection: CameraScore
    tracking: TrackingScore | None  # None: tracking off (analytics.tracking)
    counts: list[str]  # zone/line counts against the truth's, one line each (empty: no zones or lines)
    true_counts: dict[tuple[str, str, str], int]  # (zone or line, label, enter/exit/.../forward/backward)
    published_counts: dict[tuple[str, str, str], int]

    def lines(self) -> list[str]:
        out = [self.detection.line()]
        if self.tracking is not None:
            out.append(self.tracking.line())
        out += [f"{self.detection.camera}: {c}" for c in self.counts]
        return out


def run_full_evaluation(cfg: PipelineConfig, truths: dict[str, str],
                        iou_threshold: float = 0.5) -> list[CameraEvaluation]:
    """Detection scores, and with analytics.tracking on, tracking scores (the truth needs ids) and
    zone/line counts against the ones the true tracks give."""
    from pipeline.analytics.stage import camera_rules

    events: dict[str, list[dict]] = {}
    messages = collect_messages(cfg, events if cfg.analytics.tracking else None)
    cams = {c.id: c for c in cfg.cameras}
    out = []
    for cam, path in truths.items():
        dets = messages.get(cam, [])
        score = score_camera(cam, load_truth(path), dets, iou_threshold)
        tracking, counts, true, published = None, [], {}, {}
        if cfg.analytics.tracking:
            truth = load_truth_tracks(path)
            try:
                tracking = score_tracking(cam, truth, dets, iou_threshold)
            except MotmetricsMissing as exc:  # detection scores and counts need no motmetrics
                print(f"pipeline eval: {exc}; skipped", file=sys.stderr)
            if cams[cam].analytics.active and dets:
                zones, lines = camera_rules(cams[cam].analytics)
                true = true_event_counts(truth, dets[0]["width"], dets[0]["height"], zones, lines)
                published = published_event_counts(events.get(cam, []))
                counts = count_lines(true, published)
        out.append(CameraEvaluation(score, tracking, counts, dict(true), dict(published)))
    return out
