"""`pipeline eval`: run the daemon on file cameras, collect what it publishes through a real
ZeroMQ subscriber, and score it against ground truth."""
from __future__ import annotations

import threading
from collections import defaultdict

from pipeline.config import MetricsConfig, PipelineConfig
from pipeline.tools.evaluate.detection_metrics import CameraScore, load_truth, score_camera
from pipeline.publish.subscriber import Subscriber, connect_url


def collect_messages(cfg: PipelineConfig) -> dict[str, list[dict]]:
    """Run the daemon in this process until every camera has ended; return detections per camera."""
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
    with Subscriber(connect_url(cfg.publish.bind), kinds=("det",)) as sub:
        thread = threading.Thread(target=run, name="eval-daemon", daemon=True)
        thread.start()
        while thread.is_alive():
            got = sub.recv(timeout=0.2)
            if got is not None:
                messages[got[1]["camera"]].append(got[1])
        while (got := sub.recv(timeout=0.2)) is not None:
            messages[got[1]["camera"]].append(got[1])
    if failure:
        raise failure[0]
    return messages


def run_evaluation(cfg: PipelineConfig, truths: dict[str, str], iou_threshold: float = 0.5) -> list[CameraScore]:
    messages = collect_messages(cfg)
    return [score_camera(cam, load_truth(path), messages.get(cam, []), iou_threshold)
            for cam, path in truths.items()]
