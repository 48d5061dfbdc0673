"""The decode worker process: runs the ordinary sources (file, network, synthetic; NVDEC or PyAV
decoding) for the cameras the daemon gives it, one thread each, and sends their frames, statuses,
logs and counters to the daemon (messages.py).

Why a process: in one Python process the camera threads held the GIL for about a quarter of the
time at 16 NVDEC cameras, and every return from a C call waited ~1 ms for it, so inference waited
for frames (docs/BENCHMARKS.md). Here each worker has its own GIL.

The worker ignores SIGINT: a terminal's Ctrl-C reaches the whole process group, and the daemon drains
and then stops its workers itself (Shutdown). SIGTERM still ends a worker (multiprocessing's exit
handler uses it, and systemd's unit sends it to the daemon alone: KillMode=mixed). A worker also exits
when the daemon's end of the pipe closes (the daemon died).
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

import numpy as np

from pipeline.config import DecodeConfig
from pipeline.frame import Frame, StatusEvent
from pipeline.observe.metrics import Metrics
from pipeline.sources import create_source
from pipeline.workers.messages import (BuffersFreed, CounterTotals, FrameMessage, LogMessage, ReleaseFrames,
                                       Shutdown, StartCamera, StatusMessage, StopCamera)
from pipeline.workers.teardown import DeferredTeardown

log = logging.getLogger(__name__)

# Source counters the daemon's /metrics shows per camera; sent as totals every COUNTERS_INTERVAL_S.
FORWARDED_COUNTERS = ("frames_decoded", "decode_errors", "reconnects", "frames_dropped")
COUNTERS_INTERVAL_S = 1.0
MAX_MESSAGES_PER_SEND = 256
# A send waits this long for more messages after its first: the daemon's receiving thread then wakes
# once for several frames (one read, workers/wire.py) instead of once for each, every wake-up a wait
# for the interpreter lock that its inference thread also needs (scripts/receive_cost.py). A frame
# is at most this much later; a 30 fps camera's frames are 33 ms apart.
OUTBOX_GATHER_S = 0.002
CREDIT_POLL_S = 0.2  # a camera out of credits re-checks its stop event this often
# At Shutdown: wait this long for camera threads still running (the daemon asked each to stop and
# waited for it already), then at most this long to send what is queued, then exit. Together well
# under the daemon's WORKER_EXIT_S (pool.py), after which it kills the worker: at 1.0 + 1.0 s a worker
# whose cameras were slow to stop (NVDEC decoders being destroyed with the GIL held) had no margin left
# for the Shutdown message to arrive and the GIL to come back ("did not exit in time; killing it").
EXIT_CAMERAS_S = 0.5
EXIT_FLUSH_S = 0.5
SYNC_ENV = "PIPELINE_DECODE_WORKER_SYNC"  # "block": sleeping CUDA waits, for A/B runs only
_CLOSE = object()


def run_worker(conn: Connection, index: int, decode: DecodeConfig, log_level: int) -> None:
    """The worker process's entry point (multiprocessing spawn target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.current_thread().name = f"decode-worker-{index}"
    worker = DecodeWorker(decode, conn)
    _forward_logs(worker.outbox, log_level)
    if decode.device == "gpu":
        _cuda_blocking_sync(decode.gpu_id)
    try:
        worker.serve()
    finally:
        worker.close()
    # Skip the interpreter's teardown: with dozens of cameras, destroying their decoders and GPU
    # pools one by one outlasted the daemon's WORKER_EXIT_S (H200, 28 NVDEC cameras a worker), and
    # the driver frees all of it at process exit anyway. Logs and statuses went out in close().
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


class Outbox:
    """Sends queued messages to the daemon in lists, from one thread; `tick()` adds the periodic ones."""

    def __init__(self, conn: Connection, tick: Callable[[], list[Any]], tick_s: float) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._tick = tick
        self._tick_s = tick_s
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def put(self, message: Any) -> None:
        self._queue.put(message)

    def close(self, timeout: float) -> None:
        """Send what is queued, and the last tick, then stop."""
        self._queue.put(_CLOSE)
        self._thread.join(timeout)

    def _run(self) -> None:
        next_tick = time.monotonic() + self._tick_s
        closing = False
        while not closing:
            batch: list[Any] = []
            try:
                item = self._queue.get(timeout=max(0.0, next_tick - time.monotonic()))
                if item is not _CLOSE and OUTBOX_GATHER_S > 0:
                    time.sleep(OUTBOX_GATHER_S)  # let the other cameras' frames join this send
                while True:
                    if item is _CLOSE:
                        closing = True
                        break
                    batch.append(item)
                    if len(batch) >= MAX_MESSAGES_PER_SEND:
                        break
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            if closing or time.monotonic() >= next_tick:
                batch.extend(self._tick())
                next_tick = time.monotonic() + self._tick_s
            if batch and not self._send(batch):
                return

    def _send(self, batch: list[Any]) -> bool:
        try:
            self._conn.send(batch)
            return True
        except (OSError, EOFError, ValueError):  # the daemon is gone; serve() sees EOF and exits
            return False


@dataclass
class _CameraRun:
    stop: threading.Event
    thread: threading.Thread


class DecodeWorker:
    def __init__(self, decode: DecodeConfig, conn: Connection) -> None:
        self.decode = decode
        self._conn = conn
        self.metrics = Metrics()
        self.outbox = Outbox(conn, self._counter_totals, COUNTERS_INTERVAL_S)
        self._runs: dict[int, _CameraRun] = {}
        self._lock = threading.Lock()
        self._tokens = itertools.count()
        self._unreleased: dict[int, tuple[Any, Callable[[], None] | None]] = {}  # token -> (image, on_release)
        self._exporter: Any = None  # DeviceExporter, made with the first device frame
        self._teardowns = DeferredTeardown()  # stopped cameras' NVDEC decoders (teardown.py)

    def serve(self) -> None:
        while True:
            try:
                messages = self._conn.recv()
            except (EOFError, OSError):
                log.warning("the daemon went away; stopping")
                return
            for message in messages:
                if isinstance(message, ReleaseFrames):
                    self._release(message.tokens)
                elif isinstance(message, StartCamera):
                    self._start(message)
                elif isinstance(message, StopCamera):
                    with self._lock:
                        run = self._runs.get(message.run)
                    if run is not None:
                        run.stop.set()
                elif isinstance(message, Shutdown):
                    return

    def close(self) -> None:
        skipped = self._teardowns.close()  # none may start now: the process exits with os._exit
        if skipped:
            log.debug("%d stopped camera(s) left for the driver to free at exit", skipped)
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.stop.set()
        # Camera threads are daemon threads and the process leaves with os._exit: one that is slow
        # to stop is not waited for beyond EXIT_CAMERAS_S.
        started = time.monotonic()
        deadline = started + EXIT_CAMERAS_S
        for run in runs:
            run.thread.join(max(0.0, deadline - time.monotonic()))
        running = sum(run.thread.is_alive() for run in runs)
        if running:  # says, in the daemon's log, whether a kill that follows waited on cameras or on the exit
            log.warning("%d camera thread(s) still running %.2f s after shutdown; leaving without them",
                        running, time.monotonic() - started)
        self.outbox.close(EXIT_FLUSH_S)

    # ------------------------------------------------------------------ cameras

    def _start(self, message: StartCamera) -> None:
        stop = threading.Event()
        credits = threading.Semaphore(message.credits) if message.credits else None
        run_id, camera = message.run, message.camera

        def sink(frame: Frame) -> None:
            if credits is not None and camera.is_live:
                if not credits.acquire(blocking=False):
                    # the daemon holds all this camera's credits already: a newer frame would only wait
                    self.metrics.frames_dropped.labels(camera.id, "backlog").inc()
                    return
            elif credits is not None:
                while not credits.acquire(timeout=CREDIT_POLL_S):
                    if stop.is_set():
                        return
            self.outbox.put(self._frame_message(run_id, frame, credits.release if credits else None))

        def status(event: StatusEvent) -> None:
            self.outbox.put(StatusMessage(run_id, event))

        source = create_source(camera, self.decode, sink, status, stop, self.metrics, self._teardowns.add)
        thread = threading.Thread(target=self._run_camera, args=(run_id, source), name=f"camera-{camera.id}",
                                  daemon=True)
        with self._lock:
            self._runs[run_id] = _CameraRun(stop, thread)
        thread.start()

    def _run_camera(self, run_id: int, source: Any) -> None:
        try:
            source.run()  # never raises; ends with a terminal status
        finally:
            with self._lock:
                self._runs.pop(run_id, None)
                exporter = self._exporter
            if exporter is not None:
                freed = exporter.forget_run(run_id)
                if freed:
                    self.outbox.put(BuffersFreed(freed))

    # ------------------------------------------------------------------ frames

    def _frame_message(self, run_id: int, frame: Frame, on_release: Callable[[], None] | None) -> FrameMessage:
        image = frame.image
        if isinstance(image, np.ndarray):  # CPU decoding: the pixels travel in the message
            pixels: Any = image
            keep = None
        else:  # an NVDEC DeviceImage: kept here, out of its pool, until the daemon releases it
            pixels = self._device_exporter().describe(image, run_id)
            keep = image
        token = None
        if keep is not None or on_release is not None:
            token = next(self._tokens)
            with self._lock:
                self._unreleased[token] = (keep, on_release)
        return FrameMessage(run_id, frame.with_image(pixels), token)

    def _device_exporter(self) -> Any:
        with self._lock:
            if self._exporter is None:
                from pipeline.workers.cuda_ipc import DeviceExporter

                self._exporter = DeviceExporter()
            return self._exporter

    def _release(self, tokens: tuple[int, ...]) -> None:
        with self._lock:
            entries = [self._unreleased.pop(t, None) for t in tokens]
        for entry in entries:  # dropping `image` here returns its buffer to the camera's pool
            if entry is not None and entry[1] is not None:
                entry[1]()

    def _counter_totals(self) -> list[Any]:
        totals = []
        for name in FORWARDED_COUNTERS:
            for metric in getattr(self.metrics, name).collect():
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        totals.append((name, tuple(sample.labels.values()), sample.value))
        return [CounterTotals(tuple(totals))] if totals else []


def _cuda_blocking_sync(gpu_id: int) -> None:
    """PIPELINE_DECODE_WORKER_SYNC=block (an A/B aid): CUDA waits sleep instead of spinning in
    this worker. Measured worse on the H200 (16 cameras in 4 workers: 1531 frames/s end to end
    against 1945 spinning; docs/BENCHMARKS.md), so CUDA's default stays."""
    if os.environ.get(SYNC_ENV, "spin") != "block":
        return
    try:
        from cuda.bindings import driver

        from pipeline.gpu.runtime import check
        check(driver.cuInit(0), "cuInit")
        device = check(driver.cuDeviceGet(gpu_id), f"cuDeviceGet({gpu_id})")
        flags = int(driver.CUctx_flags.CU_CTX_SCHED_BLOCKING_SYNC.value)
        check(driver.cuDevicePrimaryCtxSetFlags(device, flags), "cuDevicePrimaryCtxSetFlags")
    except Exception as exc:  # noqa: BLE001 - no cuda-python or no device: NVDEC falls back and says why
        log.debug("decode worker: CUDA blocking sync not set: %s", exc)


class _ForwardingHandler(logging.Handler):
    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self._outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            args = record.args if isinstance(record.args, tuple) else ((record.args,) if record.args else ())
            plain = tuple(a if isinstance(a, (int, float, str, type(None))) else str(a) for a in args)
            traceback = None
            if record.exc_info:
                traceback = logging.Formatter().formatException(record.exc_info)
            self._outbox.put(LogMessage(record.levelno, record.name, str(record.msg), plain, traceback))
        except Exception:  # noqa: BLE001 - logging must never raise into the camera
            self.handleError(record)


def _forward_logs(outbox: Outbox, level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_ForwardingHandler(outbox))
    root.setLevel(level)
