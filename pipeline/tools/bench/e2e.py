"""End to end: the real Daemon in this process, publishing on a real ZeroMQ socket to a subscriber in
its own process (pipeline/tools/bench/subscriber.py), which records every message it receives."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.tools.bench.probe import GpuMemoryReader, ResourceProbe
from pipeline.tools.bench.report import Drops, Percentiles, Spread, StageResult
from pipeline.tools.bench.stages import FIRST_FRAMES_S, Window, counter_by_label, wait_until
from pipeline.config import CameraConfig, PipelineConfig
from pipeline.observe.metrics import Metrics

SUBSCRIBER_READY_S = 60.0  # a cold Python start on a loaded box can take a while
RUN_JOIN_S = 15.0  # Daemon.shutdown takes at most ~4 s; this is a generous bound


@dataclass(frozen=True)
class HoldCriteria:
    """When a real-time run counts as keeping up."""

    max_drop_fraction: float = 0.01  # frames dropped or messages lost / frames decoded
    max_p99_s: float = 1.0  # capture -> publish
    min_rate: float = 0.95  # published frames / frames the cameras produce at native rate


@dataclass(frozen=True)
class Received:
    recv_t: np.ndarray  # monotonic seconds
    latency_s: np.ndarray
    seq: np.ndarray
    camera: np.ndarray  # index into names
    names: list[str]
    detections: np.ndarray  # detections in each message


class SubscriberProcess:
    """`python -m pipeline.tools.bench.subscriber` for one run: start() before the daemon, finish() after."""

    def __init__(self, url: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="pipeline-bench-")
        self._out = Path(self._dir.name) / "received.npz"
        # the child imports this very package, wherever the bench was started from
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
        self._proc = subprocess.Popen([sys.executable, "-m", "pipeline.tools.bench.subscriber", url, str(self._out)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def wait_ready(self) -> None:
        assert self._proc.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self._proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(SUBSCRIBER_READY_S)
        if not ready or ready[0].strip() != "ready":
            self.close()
            raise RuntimeError(f"bench subscriber did not start within {SUBSCRIBER_READY_S:.0f} s")

    def finish(self) -> Received:
        assert self._proc.stdin is not None
        self._proc.stdin.write("stop\n")
        self._proc.stdin.flush()
        self._proc.stdin.close()
        code = self._proc.wait(30)
        if code != 0:
            raise RuntimeError(f"bench subscriber exited with status {code}")
        with np.load(self._out) as data:
            return Received(data["recv_t"], data["latency"], data["seq"], data["camera"], [str(n) for n in data["names"]],
                            data["detections"])

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._dir.cleanup()


def free_tcp_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _totals(metrics: Metrics) -> dict[str, dict[str, float]]:
    return {"decoded": counter_by_label(metrics, "pipeline_frames_decoded", "camera"),
            "dropped": counter_by_label(metrics, "pipeline_frames_dropped", "reason"),
            "decode_errors": counter_by_label(metrics, "pipeline_decode_errors", "camera")}


def _every_camera_published(metrics: Metrics, cameras: list[CameraConfig]) -> bool:
    # the typed counter, not a registry collect: with a hundred cameras collecting every 50 ms took
    # 16 % of the daemon's interpreter lock while the cameras started (py-spy on the H200, issue 22)
    return all(metrics.frames_published.value(c.id) > 0 for c in cameras)


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {k: int(v - before.get(k, 0.0)) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def _seq_gaps(received: Received, mask: np.ndarray) -> int:
    lost = 0
    for index in np.unique(received.camera[mask]):
        seqs = np.sort(received.seq[mask & (received.camera == index)])
        lost += int(np.clip(np.diff(seqs) - 1, 0, None).sum())
    return lost


def run_daemon(cfg: PipelineConfig, cameras: list[CameraConfig], realtime: bool, window: Window,
               gpu: GpuMemoryReader, target_fps: float | None, criteria: HoldCriteria,
               added_detections: int = 0) -> StageResult:
    """One end-to-end run of `cameras` (already set to realtime or not). The first `warmup_s` are not
    measured (model warm-up, queues filling). `added_detections` synthetic boxes join the model's on
    every frame (added_detections.py)."""
    from pipeline.app.daemon import Daemon, DaemonOptions
    from pipeline.tools.bench.added_detections import AddedDetections

    wrap = (lambda post: AddedDetections(post, added_detections)) if added_detections else None

    stage = "e2e_realtime" if realtime else "e2e_fast"
    bind = free_tcp_endpoint()
    run_cfg = cfg.model_copy(update={"cameras": cameras[:1],
                                     # our own loopback subscriber: no CURVE keys to hand it
                                     "publish": cfg.publish.model_copy(update={"bind": bind, "curve": None}),
                                     "metrics": cfg.metrics.model_copy(update={"bind": None})})
    metrics = Metrics()
    subscriber = SubscriberProcess(bind)
    try:
        subscriber.wait_ready()
        daemon = Daemon(run_cfg, DaemonOptions(status_interval_s=0, wait_for_subscribers=1,
                                               wait_for_subscribers_timeout_s=SUBSCRIBER_READY_S,
                                               wrap_postprocessor=wrap), metrics)
        try:
            daemon.start()
        except Exception:
            daemon.shutdown()
            raise
        stop = threading.Event()
        runner = threading.Thread(target=daemon.run, args=(stop,), name="bench-daemon", daemon=True)
        runner.start()
        try:
            # Real cameras are not in phase: spread the real-time ones over one frame interval.
            stagger = 1.0 / target_fps if realtime and target_fps else 0.0
            for cam in cameras[1:]:
                daemon.add_camera(cam)
                if stagger:
                    time.sleep(stagger)
            wait_until(lambda: _every_camera_published(metrics, cameras), FIRST_FRAMES_S)
            time.sleep(window.warmup_s)
            before = _totals(metrics)
            probe = ResourceProbe(gpu).start()
            t0 = time.monotonic()
            time.sleep(window.seconds)
            t1 = time.monotonic()
            after = _totals(metrics)
            resources = probe.stop()
        finally:
            stop.set()
            runner.join(RUN_JOIN_S)
        received = subscriber.finish()
    finally:
        subscriber.close()
    return _result(stage, cameras, received, t0, t1, before, after, resources, target_fps, realtime, criteria)


def _result(stage: str, cameras: list[CameraConfig], received: Received, t0: float, t1: float,
            before: dict, after: dict, resources, target_fps: float | None, realtime: bool,
            criteria: HoldCriteria) -> StageResult:
    elapsed = t1 - t0
    mask = (received.recv_t >= t0) & (received.recv_t <= t1)
    frames = int(mask.sum())
    counts = np.bincount(received.camera[mask], minlength=len(received.names))
    by_name = {name: int(counts[i]) for i, name in enumerate(received.names)}
    per_camera = [by_name.get(c.id, 0) / elapsed for c in cameras]
    latency = Percentiles.of(received.latency_s[mask] * 1000.0)
    dropped = _delta(after["dropped"], before["dropped"])
    decoded = sum(_delta(after["decoded"], before["decoded"]).values())
    lost = _seq_gaps(received, mask)
    drops = Drops(sum(dropped.values()), dropped, lost, sum(_delta(after["decode_errors"], before["decode_errors"]).values()),
                  decoded, round((sum(dropped.values()) + lost) / max(1, decoded), 5))
    fps = frames / elapsed
    held = reason = None
    if realtime:
        held, reason = judge(fps, target_fps, drops, latency, criteria)
    per_frame = round(float(received.detections[mask].mean()), 3) if frames else None
    return StageResult(stage, len(cameras), None, round(elapsed, 3), frames, round(fps, 3), Spread.of(per_camera),
                       None, latency, None if target_fps is None else round(target_fps, 3), drops, held, reason,
                       resources, None if frames else "no detections messages received in the window",
                       detections_per_frame=per_frame)


def judge(fps: float, target_fps: float | None, drops: Drops, latency: Percentiles | None,
          criteria: HoldCriteria) -> tuple[bool, str]:
    """Did a real-time run keep up? The first reason it did not, or 'ok'."""
    if latency is None:
        return False, "nothing published"
    if target_fps and fps < criteria.min_rate * target_fps:
        return False, f"published {fps:.1f} < {criteria.min_rate:.0%} of {target_fps:.1f} frames/s"
    if drops.drop_fraction > criteria.max_drop_fraction:
        return False, f"dropped {drops.drop_fraction:.1%} > {criteria.max_drop_fraction:.1%}"
    if latency.p99 > criteria.max_p99_s * 1000.0:
        return False, f"p99 latency {latency.p99:.0f} ms > {criteria.max_p99_s * 1000:.0f} ms"
    return True, "ok"
