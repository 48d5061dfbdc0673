"""Prometheus metrics for one daemon. Each Metrics owns its own registry (no globals),
so several daemons or tests in one process never collide."""
from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_decoded = Counter("pipeline_frames_decoded", "Frames decoded", ["camera"], registry=r)
        self.frames_dropped = Counter("pipeline_frames_dropped", "Frames dropped before inference",
                                      ["camera", "reason"], registry=r)
        self.frames_published = Counter("pipeline_frames_published", "Detection messages published",
                                        ["camera"], registry=r)
        self.decode_errors = Counter("pipeline_decode_errors", "Corrupt or undecodable packets skipped",
                                     ["camera"], registry=r)
        self.reconnects = Counter("pipeline_reconnects", "Network source reconnect attempts",
                                  ["camera"], registry=r)
        self.camera_up = Gauge("pipeline_camera_up", "1 while the camera delivers frames", ["camera"],
                               registry=r)
        self.queue_depth = Gauge("pipeline_queue_depth", "Frames waiting per camera", ["camera"], registry=r)
        self.batch_size = Histogram("pipeline_batch_size", "Frames per inference batch",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_wait = Histogram("pipeline_batch_wait_seconds", "Oldest frame's wait in the scheduler",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.stage_seconds = Histogram("pipeline_stage_seconds", "Time per batch in each stage", ["stage"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("pipeline_capture_to_publish_seconds", "Capture to publish latency",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.messages_dropped = Counter("pipeline_messages_dropped", "Messages ZeroMQ refused (HWM)",
                                        ["kind"], registry=r)
        self._lock = threading.Lock()
        self._last_publish = 0.0

    def mark_published(self, camera: str, captured_at: float) -> None:
        now = time.time()
        self.frames_published.labels(camera).inc()
        self.latency.observe(max(0.0, now - captured_at))
        with self._lock:
            self._last_publish = time.monotonic()

    def seconds_since_publish(self) -> float:
        with self._lock:
            return time.monotonic() - self._last_publish if self._last_publish else float("inf")

    def value(self, name: str, **labels: str) -> float:
        """Read one sample (tests and summaries)."""
        v = self.registry.get_sample_value(name, labels or None)
        return 0.0 if v is None else v
