"""Prometheus metrics for one daemon. Each Metrics owns its own registry (no globals),
so several daemons or tests in one process never collide.

The frame counters (decoded, published, dropped, decode errors) are OwnedCounters: the code that
decides (the systemd watchdog, the camera status board) reads their values typed, from the Python
attribute (`metrics.frames_decoded.total()`), never a metric back by its exported name, so renaming
a metric cannot break a decision."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class CounterChild:
    """One label combination of an OwnedCounter: counts into the exported counter and its own value."""

    __slots__ = ("_exported", "_lock", "_value")

    def __init__(self, exported: "Counter") -> None:
        self._exported = exported
        self._lock = threading.Lock()
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self._exported.inc(amount)  # first: it refuses a negative amount
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        with self._lock:
            return self._value


class OwnedCounter:
    """A labelled Prometheus counter (exported unchanged: the same names, labels, values and
    `_created` series) whose values this process also keeps, to read typed."""

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str], registry: CollectorRegistry) -> None:
        self._labelnames = tuple(labelnames)
        self._exported = Counter(name, documentation, list(self._labelnames), registry=registry)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], CounterChild] = {}

    def labels(self, *values: str) -> CounterChild:
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = CounterChild(self._exported.labels(*key))
        return child

    def value(self, *values: str) -> float:
        """The count of one label combination (0 before its first increment)."""
        child = self._children.get(tuple(str(v) for v in values))
        return child.value if child is not None else 0.0

    def total(self, **match: str) -> float:
        """The sum over every label combination that has the `match`ed label values, e.g.
        `frames_dropped.total(camera="gate")` over all reasons; no `match`: over everything."""
        with self._lock:
            children = list(self._children.items())
        wanted = [(self._labelnames.index(name), v) for name, v in match.items()]
        return sum(child.value for key, child in children if all(key[i] == v for i, v in wanted))

    def sums_by(self, label: str) -> dict[str, float]:
        """{value of `label`: the sum over every other label}, in one pass."""
        with self._lock:
            children = list(self._children.items())
        i = self._labelnames.index(label)
        out: dict[str, float] = {}
        for key, child in children:
            out[key[i]] = out.get(key[i], 0.0) + child.value
        return out

    def collect(self) -> list:
        """The exported metric families (as prometheus_client's collect())."""
        return self._exported.collect()


@dataclass(frozen=True)
class CameraCounts:
    decoded: int = 0
    published: int = 0
    dropped: int = 0  # every reason
    decode_errors: int = 0


@dataclass(frozen=True)
class FlowTotals:
    """Frames of every camera: each decoded frame is published, dropped, or still on its way."""

    decoded: float
    published: float
    dropped: float


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_decoded = OwnedCounter("pipeline_frames_decoded", "Frames decoded", ["camera"], registry=r)
        self.frames_dropped = OwnedCounter("pipeline_frames_dropped", "Frames dropped before inference",
                                           ["camera", "reason"], registry=r)
        self.frames_published = OwnedCounter("pipeline_frames_published", "Detection messages published",
                                             ["camera"], registry=r)
        self.candidates_truncated = Counter(
            "pipeline_candidates_truncated", "Frames whose device-selected candidate list was full "
            "(more anchors passed the score threshold than model.max_candidates)", ["camera"], registry=r)
        self.decode_errors = OwnedCounter("pipeline_decode_errors", "Corrupt or undecodable packets skipped",
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
        self.gc_pause = Histogram("pipeline_gc_pause_seconds", "Garbage collections of the daemon's process, "
                                  "by generation (every thread holds still meanwhile)", ["generation"],
                                  buckets=GC_PAUSE_BUCKETS, registry=r)
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
        self.analytics_events = Counter(
            "pipeline_analytics_events", "Zone and line events (pipeline/analytics): rule is the zone or line "
            "name, event one of enter, exit, loitering (zones), forward, backward (lines)",
            ["camera", "rule", "label", "event"], registry=r)
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
        """Read one exported sample by its name (tests of what /metrics shows; decisions use the
        typed counts below)."""
        v = self.registry.get_sample_value(name, labels or None)
        return 0.0 if v is None else v

    def camera_counts(self) -> dict[str, CameraCounts]:
        """Every camera's counts, in one pass over each counter (the supervisor asks every second:
        a pass per camera made that O(cameras^2), issue 23)."""
        decoded, published = self.frames_decoded.sums_by("camera"), self.frames_published.sums_by("camera")
        dropped, errors = self.frames_dropped.sums_by("camera"), self.decode_errors.sums_by("camera")
        return {cam: CameraCounts(int(decoded.get(cam, 0)), int(published.get(cam, 0)), int(dropped.get(cam, 0)),
                                  int(errors.get(cam, 0)))
                for cam in decoded.keys() | published.keys() | dropped.keys() | errors.keys()}

    def flow_totals(self) -> FlowTotals:
        return FlowTotals(self.frames_decoded.total(), self.frames_published.total(), self.frames_dropped.total())


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
