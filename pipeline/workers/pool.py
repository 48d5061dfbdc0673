"""Decode workers, daemon side (`decode: {workers: N}`): N processes run the cameras' sources
(child.py) and send their frames here, where they enter the scheduler like any camera thread's.

    DecodeWorkerPool  assigns each camera to the worker with the fewest, restarts a worker that dies
    _WorkerLink       one worker process: its pipe, a thread that receives, a thread that releases
    WorkerCamera      the daemon's handle for one camera: stop, join, is_alive, as a camera thread

A worker that dies (a decoder crash, the OOM killer) takes only its own cameras with it, for about
a second: they report `reconnecting` with the exit code, and a new process starts them again
(backing off up to RESTART_MAX_S if it keeps dying). Frame numbers start again from 0 then.

Flow control: a camera read with back-pressure (a file not paced in real time) gets `credits`
frames it may have unreleased here; the scheduler queue is that deep too, so a put from the
receiving thread never blocks (which would stall the worker's other cameras). Live cameras are not
held back, but have credits too: out of them, the worker drops the newest frame (reason "backlog"),
so a daemon that falls behind never lets frames pile up in the pipe (latency and memory stay
bounded); the scheduler drops their oldest as it does for camera threads.
"""
from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import queue
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.config import CameraConfig, DecodeConfig
from pipeline.frame import TERMINAL_STATES, CameraState, Frame, StatusEvent
from pipeline.observe.metrics import Metrics
from pipeline.workers.child import run_worker
from pipeline.workers.messages import (BuffersFreed, CounterTotals, DeviceRef, FrameMessage, LogMessage,
                                       ReleaseFrames, Shutdown, StartCamera, StatusMessage, StopCamera)
from pipeline.workers.wire import MessageReader

log = logging.getLogger(__name__)

RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
STABLE_S = 60.0  # a worker that lived this long restarts after RESTART_MIN_S again
WORKER_EXIT_S = 2.0  # Shutdown -> exit (every worker at once), then kill(); see close() for the daemon's
WORKER_MIN_EXIT_S = 1.0  # at least this long, whatever the daemon's stop budget has left
EXIT_POLL_S = 0.02
# A daemon that fell behind returns frames one at a time (each new frame makes the scheduler drop a
# camera's oldest), one message each, where one that keeps up returns a batch's at once: the release
# thread gathers what comes in this long into one message. scripts/release_cost.py, 1000 tokens/s, three
# rounds: 51-64 us of the daemon's CPU a token sent one by one, 31-42 gathered over 2 ms, a third of the
# messages (docs/bench/cpu-release-coalesce.txt, 2-core CPU box; not measured on a GPU).
# A credit coming back 2 ms later costs nothing: a camera has 2 x queue_per_camera of them.
RELEASE_COALESCE_S = 0.002
MPS_DEFAULT_PIPE_DIR = "/tmp/nvidia-mps"  # nvidia-cuda-mps-control's default CUDA_MPS_PIPE_DIRECTORY

FrameSink = Callable[[Frame], None]
StatusSink = Callable[[StatusEvent], None]


@dataclass
class WorkerCamera:
    """One camera running in a worker, seen from the daemon (the camera-thread counterpart)."""

    config: CameraConfig
    run: int
    worker: int  # index of the worker process it runs in
    credits: int | None
    sink: FrameSink
    pool: "DecodeWorkerPool"
    stop: threading.Event
    ended: threading.Event = field(default_factory=threading.Event)  # a terminal status came

    def request_stop(self) -> None:
        self.stop.set()
        self.pool.stop_camera(self)

    def join(self, timeout: float) -> None:
        self.ended.wait(timeout)

    def is_alive(self) -> bool:
        return not self.ended.is_set()


class _WorkerLink:
    """One worker process and its two daemon-side threads."""

    def __init__(self, index: int, decode: DecodeConfig, log_level: int,
                 on_message: Callable[["_WorkerLink", Any], None], on_exit: Callable[["_WorkerLink"], None]) -> None:
        self.index = index
        self.started = time.monotonic()
        ctx = multiprocessing.get_context("spawn")  # never fork a process that holds CUDA state
        self._conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=run_worker, args=(child_conn, index, decode, log_level),
                                   name=f"decode-worker-{index}", daemon=True)
        self.process.start()
        child_conn.close()
        self._send_lock = threading.Lock()
        self._releases: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.alive = True
        self.asked_to_exit_at = 0.0
        self.importer: Any = None  # DeviceImporter, made with the first device frame
        self.counter_totals: dict[tuple[str, tuple[str, ...]], float] = {}
        self._on_message = on_message
        self._on_exit = on_exit
        self._receiver = threading.Thread(target=self._receive, name=f"decode-worker-{index}-recv", daemon=True)
        self._releaser = threading.Thread(target=self._send_releases, name=f"decode-worker-{index}-release",
                                          daemon=True)
        self._receiver.start()
        self._releaser.start()

    def send(self, message: Any) -> None:
        with self._send_lock:
            try:
                self._conn.send([message])
            except (OSError, ValueError):  # the worker is gone: the receiving thread handles it
                pass

    def release(self, token: int) -> None:
        """A frame from this worker is done (runs in whichever thread dropped it)."""
        if self.alive:
            self._releases.put(token)

    def ask_to_exit(self) -> None:
        self.asked_to_exit_at = time.monotonic()
        self.send(Shutdown())

    def finish(self, deadline: float) -> None:
        """Wait for the exit ask_to_exit() asked for until `deadline` (monotonic), then kill."""
        self.process.join(max(0.0, deadline - time.monotonic()))
        # join() returns when the worker's end of the sentinel pipe closes, which happens as it
        # starts to exit; the exit itself (the driver tearing down its NVDEC decoders) takes a moment
        # more, and is_alive() is True until then: killing it there was the "did not exit in time"
        # after 0.6 s of a 2 s budget in issue 22's H200 runs.
        while self.process.is_alive() and time.monotonic() < deadline:
            time.sleep(EXIT_POLL_S)
        if self.process.is_alive():
            log.warning("decode worker %d did not exit in time (%.1f s after it was asked to); killing it",
                        self.index, time.monotonic() - self.asked_to_exit_at)
            self.process.kill()
            self.process.join(WORKER_EXIT_S)
        self._stop_threads()

    def _stop_threads(self) -> bool:
        """Stop the release thread; False if it was stopped already."""
        with self._send_lock:
            if not self.alive:
                return False
            self.alive = False
        self._releases.put(None)
        return True

    def _receive(self) -> None:
        reader = MessageReader(self._conn)  # everything that has arrived, in one read (wire.py)
        while True:
            try:
                sends = reader.read()
            except (EOFError, OSError):
                break
            for messages in sends:  # each of the worker's sends is a list
                for message in messages:
                    try:
                        self._on_message(self, message)
                    except Exception:  # noqa: BLE001 - one bad message must not stop this worker's cameras
                        log.exception("decode worker %d: message %s failed", self.index, type(message).__name__)
        self.process.join(WORKER_EXIT_S)
        unexpected = self._stop_threads()  # False: finish() stopped them first
        with self._send_lock:
            self._conn.close()
        if unexpected:
            self._on_exit(self)

    def _send_releases(self) -> None:
        while True:
            token = self._releases.get()
            if token is not None and RELEASE_COALESCE_S > 0:
                time.sleep(RELEASE_COALESCE_S)
            tokens = []
            while token is not None:
                tokens.append(token)
                try:
                    token = self._releases.get_nowait()
                except queue.Empty:
                    break
            if tokens:
                self.send(ReleaseFrames(tuple(tokens)))
            if token is None:
                return


class DecodeWorkerPool:
    def __init__(self, decode: DecodeConfig, workers: int, metrics: Metrics, status: StatusSink) -> None:
        self.decode = decode
        self.metrics = metrics
        self._status = status
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._log_level = logging.getLogger().getEffectiveLevel()
        self._links: list[_WorkerLink | None] = [None] * workers
        self._restart_delay = [RESTART_MIN_S] * workers
        self._runs: dict[int, WorkerCamera] = {}  # running cameras by StartCamera.run
        self._next_run = 0
        if decode.device == "gpu" and not mps_running():
            log.warning("decode.workers: %d without CUDA MPS: the GPU time-slices between the worker processes "
                        "and this one, which measured no faster than decode.workers: 0 (docs/operations.md, "
                        "Decode workers)", workers)

    @property
    def size(self) -> int:
        return len(self._links)

    def add_camera(self, camera: CameraConfig, sink: FrameSink, credits: int | None,
                   stop: threading.Event) -> WorkerCamera:
        """Start `camera` on the worker with the fewest cameras; its frames go to `sink`."""
        with self._lock:
            index = min(range(self.size), key=lambda i: len(self._cameras_of(i)))
            self._next_run += 1
            cam = WorkerCamera(camera, self._next_run, index, credits, sink, self, stop)
            self._runs[cam.run] = cam
            link = self._links[index]
            if link is None:
                link = self._links[index] = self._start_link(index)
        link.send(StartCamera(cam.run, camera, credits))
        return cam

    def stop_camera(self, cam: WorkerCamera) -> None:
        with self._lock:
            link = self._links[cam.worker] if cam.run in self._runs else None
        if link is not None:
            link.send(StopCamera(cam.run))
        else:
            cam.ended.set()

    def close(self, deadline: float | None = None) -> None:
        """Stop every worker (the daemon has drained: no frame of theirs is in use any more). Each
        gets until `deadline` (monotonic; the daemon's stop budget), at least WORKER_MIN_EXIT_S, to
        leave on its own; without one, WORKER_EXIT_S."""
        self._closing.set()
        with self._lock:
            links = [link for link in self._links if link is not None]
            self._links = [None] * self.size
            cams = list(self._runs.values())
        for link in links:
            link.ask_to_exit()
        now = time.monotonic()
        deadline = now + WORKER_EXIT_S if deadline is None else max(deadline, now + WORKER_MIN_EXIT_S)
        for link in links:
            link.finish(deadline)
        for cam in cams:
            cam.ended.set()

    # ------------------------------------------------------------------ receiving

    def _cameras_of(self, index: int) -> list[WorkerCamera]:
        """The running cameras of worker `index` (holding the lock)."""
        return [c for c in self._runs.values() if c.worker == index]

    def _start_link(self, index: int) -> _WorkerLink:
        return _WorkerLink(index, self.decode, self._log_level, self._on_message, self._on_exit)

    def _on_message(self, link: _WorkerLink, message: Any) -> None:
        if isinstance(message, FrameMessage):
            self._on_frame(link, message)
        elif isinstance(message, StatusMessage):
            self._on_status(message)
        elif isinstance(message, LogMessage):
            template = message.template + ("\n%s" if message.traceback else "")
            args = message.args + ((message.traceback,) if message.traceback else ())
            logging.getLogger(message.logger).log(message.level, template, *args)
        elif isinstance(message, CounterTotals):
            for name, labels, total in message.totals:
                key = (name, labels)
                delta = total - link.counter_totals.get(key, 0.0)
                link.counter_totals[key] = total
                if delta > 0:
                    getattr(self.metrics, name).labels(*labels).inc(delta)
        elif isinstance(message, BuffersFreed) and link.importer is not None:
            link.importer.forget(message.buffer_ids)

    def _on_frame(self, link: _WorkerLink, message: FrameMessage) -> None:
        release = None if message.token is None else functools.partial(link.release, message.token)
        cam = self._runs.get(message.run)
        if cam is None or self._closing.is_set():  # its camera was removed meanwhile, or the daemon has drained
            if release is not None:
                release()
            return
        pixels = message.frame.image
        if isinstance(pixels, DeviceRef):
            if link.importer is None:
                from pipeline.workers.cuda_ipc import DeviceImporter

                link.importer = DeviceImporter(self.decode.gpu_id)
            try:
                image: Any = link.importer.image(pixels, release)
            except Exception:
                if link.process.is_alive():
                    raise
                # still in the pipe when its worker died: the picture went with the worker's memory
                self.metrics.frames_dropped.labels(cam.config.id, "worker_exited").inc()
                return
        else:
            image = pixels
            if release is not None:
                weakref.finalize(image, release)
        cam.sink(message.frame.with_image(image))

    def _on_status(self, message: StatusMessage) -> None:
        cam = self._runs.get(message.run)
        if cam is None:
            return
        self._status(message.event)
        if message.event.state in TERMINAL_STATES:
            with self._lock:
                self._runs.pop(cam.run, None)
            cam.ended.set()

    # ------------------------------------------------------------------ a worker died

    def _on_exit(self, link: _WorkerLink) -> None:
        if self._closing.is_set():
            return
        code = link.process.exitcode
        with self._lock:
            cams = self._cameras_of(link.index)
            lived = time.monotonic() - link.started
            delay = RESTART_MIN_S if lived >= STABLE_S else self._restart_delay[link.index]
            self._restart_delay[link.index] = min(RESTART_MAX_S, delay * 2)
        self.metrics.decode_worker_exits.labels(str(link.index)).inc()
        reason = f"decode worker {link.index} exited (exit code {code}); restarting it in {delay:g} s"
        log.error("%s; its cameras: %s", reason, ", ".join(c.config.id for c in cams) or "none")
        for cam in cams:
            self._status(StatusEvent(cam.config.id, CameraState.RECONNECTING, time.time(), reason))
        if link.importer is not None:
            link.importer.forget_all()  # each mapping closes when its last frame here goes
        if self._closing.wait(delay):
            return
        with self._lock:
            if self._closing.is_set():
                return
            new = self._links[link.index] = self._start_link(link.index)
            cams = [c for c in self._cameras_of(link.index) if not c.stop.is_set()]
            stopped = [c for c in self._cameras_of(link.index) if c.stop.is_set()]
        for cam in cams:
            new.send(StartCamera(cam.run, cam.config, cam.credits))
        for cam in stopped:  # a stop sent to the dead worker: this camera will not come back
            self._on_status(StatusMessage(cam.run, StatusEvent(cam.config.id, CameraState.STOPPED, time.time(),
                                                               "stop requested")))


def mps_running(environ: dict[str, str] | None = None) -> bool:
    """Whether a CUDA MPS control daemon is listening where CUDA clients of this process would look."""
    env = os.environ if environ is None else environ
    return os.path.exists(os.path.join(env.get("CUDA_MPS_PIPE_DIRECTORY", MPS_DEFAULT_PIPE_DIR), "control"))
