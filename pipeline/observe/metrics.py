"""Prometheus metrics for one daemon. Each Metrics owns its own registry (no globals),
so several daemons or tests in one process never collide."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
        self.candidates_truncated = Counter(
            "pipeline_candidates_truncated", "Frames whose device-selected candidate list was full "
            "(more anchors passed the score threshold than model.max_candidates)", ["camera"], registry=r)
        self.decode_errors = Counter("pipeline_decode_errors", "Corrupt or undecodable packets skipped",
                                     ["camera"], registry=r)
        self.reconnects = Counter("pipeline_reconnects", "Network source reconnect attempts",
                                  ["camera"], registry=r)
        self.decode_worker_exits = Counter("pipeline_decode_worker_exits", "Decode worker processes that "
                                           "died and were restarted (decode.workers)", ["worker"], registry=r)
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
        self.subscriptions_refused = Counter(
            "pipeline_subscriptions_refused", "Subscriptions refused on the publish socket (a topic no "
            "camera has, past the limit of such topics)", registry=r)
        self.camera_state = Gauge("pipeline_camera_state", "1 for the camera's current state, 0 for the others",
                                  ["camera", "state"], registry=r)
        self.stage_queue_depth = Gauge("pipeline_stage_queue_depth", "Items waiting between stage threads",
                                       ["queue"], registry=r)
        self.config_reloads = Counter("pipeline_config_reloads", "Config reloads (SIGHUP)", ["result"],
                                      registry=r)
        Gauge("pipeline_seconds_since_last_publish", "Seconds since a detections message was last sent "
              "(+Inf before the first)", registry=r).set_function(self.seconds_since_publish)
        gpu = gpu_memory_reader()
        if gpu is not None:
            r.register(GpuMemoryCollector(gpu))
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

    def total(self, sample_name: str) -> float:
        """Sum of one sample name over all its label values, e.g. every camera's
        `pipeline_frames_decoded_total`."""
        prefix = sample_name.removesuffix("_total")
        return sum(s.value for metric in self.registry.collect() if metric.name == prefix
                   for s in metric.samples if s.name == sample_name)


# ---------------------------------------------------------------- GPU memory (where available)

GpuReading = list[tuple[str, float, float]]  # (gpu index, used bytes, total bytes)
GPU_READ_EVERY_S = 5.0  # summaries read metrics often; the GPU is asked at most this often


def gpu_memory_reader() -> Callable[[], GpuReading] | None:
    """NVML through pynvml when importable, else nvidia-smi when on PATH, else None (no GPU metrics)."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - not installed, or no driver: try nvidia-smi
        smi = shutil.which("nvidia-smi")
        return (lambda: _read_nvidia_smi(smi)) if smi else None

    def read_nvml() -> GpuReading:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i))
            out.append((str(i), float(info.used), float(info.total)))
        return out

    return read_nvml


def _read_nvidia_smi(smi: str) -> GpuReading:
    out = subprocess.run([smi, "--query-gpu=index,memory.used,memory.total", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=5, check=True).stdout
    return parse_nvidia_smi_memory(out)


def parse_nvidia_smi_memory(text: str) -> GpuReading:
    """`0, 1234, 81559` lines (MiB) -> [("0", used bytes, total bytes)]; unparsable lines are skipped."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        try:
            out.append((parts[0], float(parts[1]) * 2**20, float(parts[2]) * 2**20))
        except ValueError:
            continue
    return out


class GpuMemoryCollector(Collector):
    """pipeline_gpu_memory_used_bytes / _total_bytes per GPU, read lazily at scrape time."""

    def __init__(self, read: Callable[[], GpuReading]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._cached: GpuReading = []
        self._read_at = -float("inf")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if time.monotonic() - self._read_at >= GPU_READ_EVERY_S:
                self._read_at = time.monotonic()
                try:
                    self._cached = self._read()
                except Exception:  # noqa: BLE001 - a scrape must not fail because the GPU query did
                    self._cached = []
            reading = self._cached
        used = GaugeMetricFamily("pipeline_gpu_memory_used_bytes", "GPU memory in use (whole device)",
                                 labels=["gpu"])
        total = GaugeMetricFamily("pipeline_gpu_memory_total_bytes", "GPU memory size", labels=["gpu"])
        for gpu, used_b, total_b in reading:
            used.add_metric([gpu], used_b)
            total.add_metric([gpu], total_b)
        yield used
        yield total

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # no collect() at registration: that would query the GPU
