"""Stages measured alone: decode (N camera threads, or decode workers), preprocess, inference and
postprocess (one batch size, fed from decoded frames held in memory). Each uses the same classes the
daemon uses."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import numpy as np

from pipeline.tools.bench.probe import GpuMemoryReader, ResourceProbe
from pipeline.tools.bench.report import Percentiles, Spread, StageResult
from pipeline.config import CameraConfig, PipelineConfig
from pipeline.frame import CameraState, Frame, FrameBatch, InferenceResult, StatusEvent, TensorBatch
from pipeline.observe.metrics import Metrics

MIN_CALLS = 3  # a batch stage runs at least this often in its window, however slow
WARMUP_CALLS = 2  # first calls build kernels, caches and pools: not measured
SOURCE_JOIN_S = 2.0
# A decode worker tearing down dozens of busy NVDEC decoders takes longer than the pool's default 2 s
# (2.2-2.5 s with 34-35 cameras a worker on the H200, issue 22 sessions 8-9); like the daemon's stop
# budget (app/daemon.py STOP_BUDGET_S), give them time to leave on their own before being killed.
WORKER_EXIT_BUDGET_S = 5.0
# Decode and end to end start their warm-up once every camera has a frame (many cameras, and decode
# worker processes above all, take seconds to open), but never later than this.
FIRST_FRAMES_S = 60.0


@dataclass(frozen=True)
class Window:
    warmup_s: float
    seconds: float


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Poll `condition` until it holds or `timeout_s` passes (the caller measures what it got)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)


def counter_by_label(metrics: Metrics, name: str, label: str) -> dict[str, float]:
    """A labelled counter's current values, e.g. pipeline_frames_decoded by camera."""
    out: dict[str, float] = {}
    for metric in metrics.registry.collect():
        if metric.name != name:
            continue
        for sample in metric.samples:
            if sample.name == f"{name}_total":
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


# ---------------------------------------------------------------------------------------------- decode

class FrameKeeper:
    """The decode stage's sink: counts each camera's frames and keeps the first `keep` frames (the
    batch stages' input); the rest are dropped at once."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self.frames: list[Frame] = []
        self.counts: dict[str, list[int]] = {}  # camera -> [frames]; each list is bumped by one thread only
        self.failures: dict[str, str] = {}  # camera -> why it went down or ended

    def sink_for(self, camera_id: str) -> Callable[[Frame], None]:
        tally = self.counts.setdefault(camera_id, [0])

        def sink(frame: Frame) -> None:
            tally[0] += 1
            if len(self.frames) < self._keep:
                with self._lock:
                    if len(self.frames) < self._keep:
                        self.frames.append(frame)
        return sink

    def every_camera_has_a_frame(self) -> bool:
        """Every camera has a frame, or has failed (`failures` names it)."""
        return all(tally[0] or camera in self.failures for camera, tally in self.counts.items())

    def snapshot(self) -> dict[str, int]:
        return {camera: tally[0] for camera, tally in self.counts.items()}


@contextmanager
def _decoding(cameras: list[CameraConfig], cfg: PipelineConfig, keep: int) -> Iterator[FrameKeeper]:
    """The cameras decoding as the daemon runs them (each in its own thread, or with `decode.workers`
    in that many worker processes) into a FrameKeeper, from when every camera has a frame (or
    FIRST_FRAMES_S passed) until the block ends; then they stop."""
    from pipeline.app.gpu_assignment import device_path
    from pipeline.sources import create_source
    from pipeline.workers import DecodeWorkerPool

    metrics = Metrics()
    keeper = FrameKeeper(0 if cfg.decode.workers else keep)
    stop = threading.Event()

    def on_status(event: StatusEvent) -> None:
        if event.state in (CameraState.DOWN, CameraState.EOF):
            keeper.failures[event.camera_id] = f"{event.state.value}: {event.reason}"

    threads = []
    decode = device_path(cfg).decode  # decode.gpu_id: the GPU the daemon would use
    pool = DecodeWorkerPool(decode, cfg.decode.workers, metrics, on_status) if cfg.decode.workers else None
    try:
        for cam in cameras:
            if pool is not None:
                pool.add_camera(cam, keeper.sink_for(cam.id), None, stop)
                continue
            source = create_source(cam, decode, keeper.sink_for(cam.id), on_status, stop, metrics)
            threads.append(threading.Thread(target=source.run, name=f"bench-decode-{cam.id}", daemon=True))
        for t in threads:
            t.start()
        wait_until(keeper.every_camera_has_a_frame, FIRST_FRAMES_S)
        yield keeper
    finally:
        stop.set()
        deadline = time.monotonic() + SOURCE_JOIN_S
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if pool is not None:
            pool.close(deadline=time.monotonic() + WORKER_EXIT_BUDGET_S)


def _per_camera_fps(cameras: list[CameraConfig], before: dict[str, int], after: dict[str, int],
                    elapsed: float) -> list[float]:
    return [(after.get(c.id, 0) - before.get(c.id, 0)) / elapsed for c in cameras]


def _no_frames(keeper: FrameKeeper) -> str:
    """The error of a window without frames, naming the first camera that failed, if one did."""
    first = next(iter(keeper.failures.items()), None)
    return "no frames decoded" + (f" ({first[0]}: {first[1]})" if first else "")


def measure_decode(cameras: list[CameraConfig], cfg: PipelineConfig, window: Window, keep: int,
                   gpu: GpuMemoryReader) -> tuple[StageResult, list[Frame]]:
    """The cameras decoding as fast as they can (the sink never waits), as the daemon runs them,
    counted as the frames reach this process. Returns the result and the first `keep` decoded frames
    (none from workers: their pictures live in the workers' memory, which goes when they stop)."""
    with _decoding(cameras, cfg, keep) as keeper:
        time.sleep(window.warmup_s)
        before = keeper.snapshot()
        probe = ResourceProbe(gpu).start()
        t0 = time.monotonic()
        time.sleep(window.seconds)
        elapsed = time.monotonic() - t0
        after = keeper.snapshot()
        resources = probe.stop()
    frames = int(sum(after.values()) - sum(before.values()))
    error = None if frames else _no_frames(keeper)
    result = StageResult("decode", len(cameras), None, round(elapsed, 3), frames, round(frames / elapsed, 3),
                         Spread.of(_per_camera_fps(cameras, before, after, elapsed)), None, None, None, None, None,
                         None, resources, error)
    return result, keeper.frames


def measure_inference_under_decode(backend: Any, tensor: TensorBatch, cameras: list[CameraConfig],
                                   cfg: PipelineConfig, window: Window, target_fps: float | None,
                                   gpu: GpuMemoryReader) -> StageResult:
    """One model instance timed as `measure_inference` times it, while `cameras` (real-time ones)
    decode as the daemon decodes them: what decoding leaves the model when both share the GPU (NVDEC's
    surface handling runs on the SMs) or the CPU. per_camera_fps is the decoders' rate meanwhile (did
    they keep real time); target_fps what the cameras send, so `held` says whether the model alone
    still keeps up with them (frame preparation, measured apart, comes on top)."""
    with _decoding(cameras, cfg, keep=0) as keeper:
        time.sleep(window.warmup_s)
        before = keeper.snapshot()
        t0 = time.monotonic()
        alone, _ = measure_inference([backend], tensor, window.seconds, gpu)
        elapsed = time.monotonic() - t0
        after = keeper.snapshot()
    decoded = int(sum(after.values()) - sum(before.values()))
    if not decoded:
        return replace(alone, stage="inference_under_decode", streams=len(cameras), error=_no_frames(keeper))
    held = None if target_fps is None else alone.fps >= target_fps
    reason = (f"inference {alone.fps:.1f} < {target_fps:.1f} frames/s the cameras send" if held is False else None)
    return replace(alone, stage="inference_under_decode", streams=len(cameras),
                   per_camera_fps=Spread.of(_per_camera_fps(cameras, before, after, elapsed)),
                   target_fps=None if target_fps is None else round(target_fps, 3), held=held, held_reason=reason)


# ---------------------------------------------------------------------------------------------- batch stages

def _timed_calls(call: Callable[[], Any], seconds: float, gpu: GpuMemoryReader) -> tuple[list[float], float, Any]:
    """Warm up, then call repeatedly for `seconds` (at least MIN_CALLS times).
    Returns per-call seconds, the window's resources and the last output."""
    for _ in range(WARMUP_CALLS):
        call()
    probe = ResourceProbe(gpu).start()
    t0 = time.monotonic()
    times, out = _repeat(call, lambda: time.monotonic() - t0 >= seconds)
    return times, probe.stop(), out


def _repeat(call: Callable[[], Any], done: Callable[[], bool]) -> tuple[list[float], Any]:
    """Call until `done()` (and at least MIN_CALLS times): each call's seconds and the last output."""
    times: list[float] = []
    out = None
    while len(times) < MIN_CALLS or not done():
        started = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - started)
    return times, out


def _batch_result(stage: str, batch_size: int, times: list[float], resources: Any,
                  wall_s: float | None = None) -> StageResult:
    """wall_s: the window's length when calls overlapped (several threads); else the calls' sum."""
    total = wall_s if wall_s is not None else sum(times)
    frames = batch_size * len(times)
    return StageResult(stage, None, batch_size, round(total, 3), frames, round(frames / total, 3), None,
                       Percentiles.of(np.asarray(times) * 1000.0), None, None, None, None, None, resources)


def frame_batches(frames: list[Frame], batch_size: int) -> list[FrameBatch]:
    """Full batches cycling through the held frames (each batch mixes cameras like the scheduler's)."""
    if not frames:
        raise ValueError("no decoded frames to feed the batch stages")
    count = max(1, len(frames) // batch_size)
    return [FrameBatch(tuple(frames[(b * batch_size + i) % len(frames)] for i in range(batch_size)),
                       time.monotonic(), 0.0) for b in range(count)]


def measure_preprocess(preprocess: Any, frames: list[Frame], batch_size: int, seconds: float,
                       gpu: GpuMemoryReader) -> tuple[StageResult, TensorBatch]:
    batches = frame_batches(frames, batch_size)
    turn = iter(range(1 << 62))
    times, resources, tensor = _timed_calls(lambda: preprocess(batches[next(turn) % len(batches)]), seconds, gpu)
    result = _batch_result("preprocess", batch_size, times, resources)
    if getattr(preprocess, "gpu_frames", 0):  # the fused kernel times itself with CUDA events
        result = replace(result, gpu_us_per_frame=round(1e6 * preprocess.gpu_seconds / preprocess.gpu_frames, 3))
    return result, tensor


def measure_inference(backends: list[Any], tensor: TensorBatch, seconds: float,
                      gpu: GpuMemoryReader) -> tuple[StageResult, InferenceResult]:
    """One model instance: as the daemon's inference stage runs it (app/lookahead.py): each call
    submits the next batch, then waits for the one before, so a backend that queues ahead has two
    on the GPU (the others run each batch inside submit). Several (model.instances): as the daemon
    runs them, each on its own thread, all at once on the same batch; throughput is images over the window."""
    batch = len(tensor.frames)
    if len(backends) == 1:
        backend, pending = backends[0], [None]

        def one_behind() -> InferenceResult:
            submitted = backend.submit(tensor)
            previous, pending[0] = pending[0], submitted
            return (previous if previous is not None else submitted).result()

        times, resources, result = _timed_calls(one_behind, seconds, gpu)
        if pending[0] is not None:
            pending[0].result()  # nothing left queued on the GPU
        return _batch_result("inference", batch, times, resources), result
    times, resources, result, wall = _concurrent_calls([lambda b=b: b.infer(tensor) for b in backends],
                                                       [b.bind_to_thread for b in backends], seconds, gpu)
    return _batch_result("inference", batch, times, resources, wall), result


def _concurrent_calls(calls: list[Callable[[], Any]], prepare: list[Callable[[], None]], seconds: float,
                      gpu: GpuMemoryReader) -> tuple[list[float], Any, Any, float]:
    """calls[i] repeatedly on thread i for `seconds`, after prepare[i] on that thread (one thread at a
    time, like the daemon's start) and a warm-up. Returns every call's seconds, the window's
    resources, one output and the window's wall time (until the last call ended)."""
    go, stop = threading.Event(), threading.Event()
    times: list[float] = []
    outputs: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def lane(call: Callable[[], Any], ready: Callable[[], None], prepared: threading.Event) -> None:
        try:
            try:
                ready()
                for _ in range(WARMUP_CALLS):
                    call()
            finally:
                prepared.set()
            go.wait()
            mine, out = _repeat(call, stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the measuring thread
            errors.append(exc)
            stop.set()
            return
        with lock:
            times.extend(mine)
            outputs.append(out)

    threads = []
    for call, ready in zip(calls, prepare):
        prepared = threading.Event()
        threads.append(threading.Thread(target=lane, args=(call, ready, prepared), daemon=True))
        threads[-1].start()
        prepared.wait()
    probe = ResourceProbe(gpu).start()
    t0 = time.monotonic()
    go.set()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    resources = probe.stop()
    if errors:
        raise errors[0]
    return times, resources, outputs[-1], wall


def measure_postprocess(postprocess: Any, result: InferenceResult, seconds: float,
                        gpu: GpuMemoryReader) -> StageResult:
    times, resources, _ = _timed_calls(lambda: postprocess(result), seconds, gpu)
    return _batch_result("postprocess", len(result.frames), times, resources)
