"""The analytics stage alone: tracking + one zone + one line per camera, on synthetic detections.

Each camera sees `detections` moving objects per frame (boxes with noise, scores 0.3..0.95, a
share of them leaving and being replaced, so tracks are born and die all the time). Frames go
round robin over the cameras, as batches from the daemon do. With shards > 1 the cameras are
split over that many processes (each camera's frames stay in order in one process) and their
frames are added up; the window is the same wall-clock window for all of them.
"""
from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np

from pipeline.frame import Detection, FrameDetections
from pipeline.tools.bench.probe import GpuMemoryReader, ResourceProbe
from pipeline.tools.bench.report import Percentiles, Spread, StageResult

LABELS = ("person", "car", "bicycle")
WIDTH, HEIGHT = 1280, 720
FRAMES_PER_CAMERA = 120  # generated once, replayed (tracks then end and restart: more churn)
SAMPLE_EVERY = 16  # per-frame times kept for the percentiles


def synthetic_frames(camera_id: str, detections: int, n_frames: int, seed: int) -> list[FrameDetections]:
    rng = np.random.default_rng(seed)
    n = detections
    pos = rng.uniform([0, 100], [WIDTH - 60, HEIGHT], (n, 2))
    vel = rng.uniform(-6, 6, (n, 2))
    size = rng.uniform([30, 60], [90, 200], (n, 2))
    cls = rng.integers(0, len(LABELS), n)
    out = []
    for k in range(n_frames):
        pos += vel
        leave = (rng.random(n) < 0.01) | (pos[:, 0] < -50) | (pos[:, 0] > WIDTH) | (pos[:, 1] < 60) | (pos[:, 1] > HEIGHT + 50)
        if leave.any():  # replaced by a new object elsewhere
            m = int(leave.sum())
            pos[leave] = rng.uniform([0, 100], [WIDTH - 60, HEIGHT], (m, 2))
            vel[leave] = rng.uniform(-6, 6, (m, 2))
            cls[leave] = rng.integers(0, len(LABELS), m)
        jitter = rng.normal(0, 1.5, (n, 4))
        boxes = np.concatenate([pos - [0, 1] * size, pos + [1, 0] * size], axis=1) + jitter
        boxes[:, 1] = np.minimum(boxes[:, 1], boxes[:, 3] - 4)
        scores = rng.uniform(0.3, 0.95, n)
        dets = tuple(Detection(LABELS[c], int(c), float(s), tuple(float(v) for v in b))
                     for b, s, c in zip(boxes, scores, cls))
        out.append(FrameDetections(camera_id, k, k / 25.0, 1.7e9 + k / 25.0, WIDTH, HEIGHT, dets))
    return out


def bench_cameras(ids: list[str]):
    """Cameras with one zone (the middle of the frame) and one line (across it), in fractions."""
    from pipeline.config import CameraConfig

    analytics = {"zones": [{"name": "middle", "points": [[0.3, 0.3], [0.7, 0.3], [0.7, 0.8], [0.3, 0.8]]}],
                 "lines": [{"name": "across", "start": [0.0, 0.55], "end": [1.0, 0.55]}]}
    return [CameraConfig(id=cid, url="synthetic:1280x720@25", analytics=analytics) for cid in ids]


def _shard(ids: list[str], detections: int, seconds: float, ready, go, results) -> None:
    from pipeline.analytics.stage import Analytics
    from pipeline.config import AnalyticsConfig

    frames = {cid: synthetic_frames(cid, detections, FRAMES_PER_CAMERA, seed=i)
              for i, cid in enumerate(ids)}
    stage = Analytics(AnalyticsConfig(tracking=True), bench_cameras(ids))
    for cid in ids:  # warm-up: every camera has tracks before the window
        for fd in frames[cid][:5]:
            stage(fd)
    ready.wait()
    go.wait()
    done = {cid: 0 for cid in ids}
    sampled: list[float] = []
    t0 = time.monotonic()
    k = 5
    while time.monotonic() - t0 < seconds:
        for cid in ids:
            fd = frames[cid][k % FRAMES_PER_CAMERA]
            if done[cid] % SAMPLE_EVERY == 0:
                started = time.perf_counter()
                stage(fd)
                sampled.append(time.perf_counter() - started)
            else:
                stage(fd)
            done[cid] += 1
        k += 1
    results.put((done, sampled, time.monotonic() - t0))


def measure_analytics(cameras: int, detections: int, seconds: float, shards: int,
                      gpu: GpuMemoryReader) -> StageResult:
    ids = [f"cam{i:03d}" for i in range(cameras)]
    ctx = mp.get_context("fork")
    ready = ctx.Barrier(shards + 1)
    go = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_shard, args=(ids[i::shards], detections, seconds, ready, go, results),
                         daemon=True) for i in range(shards)]
    for p in procs:
        p.start()
    ready.wait(timeout=300)
    probe = ResourceProbe(gpu).start()
    go.set()
    got = [results.get(timeout=seconds + 120) for _ in procs]
    resources = probe.stop()
    for p in procs:
        p.join(10)
    per_camera = {cid: n for done, _, _ in got for cid, n in done.items()}
    wall = max(w for _, _, w in got)
    frames = sum(per_camera.values())
    sampled = [s for _, samples, _ in got for s in samples]
    return StageResult(f"analytics_{detections}", cameras, None, round(wall, 3), frames, round(frames / wall, 3),
                       Spread.of([n / wall for n in per_camera.values()]), Percentiles.of(np.asarray(sampled) * 1000.0),
                       None, None, None, None, None, resources)
