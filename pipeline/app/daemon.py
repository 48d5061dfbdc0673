"""Wires the stages into threads and queues, supervises them, and shuts them down in reverse order.

    camera threads -> BatchScheduler -> batch thread (preprocess) -> infer thread(s) -> postprocess thread
    -> publish thread (ZeroMQ).  Status events from sources go straight to the publish thread.

With `model.instances: N` there are N infer threads, each with its own copy of the model, taking
batches from one queue; their results go on to postprocess in the order the batches came
(pipeline/app/turn_order.py), so every camera's messages stay in frame order.

Postprocess has its own thread so the infer thread hands the GPU its next batch as soon as one
returns, instead of first decoding and publishing-queueing the last one's detections.

The daemon holds no stage logic: each stage lives in its own module.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import zmq

from pipeline.config import CameraConfig, ConfigError, PipelineConfig
from pipeline.frame import CameraState, Frame, FrameBatch, FrameDetections, InferenceResult, StatusEvent, TensorBatch
from pipeline.app.camera_status import CameraStatusBoard
from pipeline.infer import Backend, create_backend
from pipeline.observe.logs import NOT_RATE_LIMITED
from pipeline.observe.metrics import Metrics
from pipeline.app.systemd_notify import SystemdNotifier
from pipeline.postprocess import YoloPostprocessor
from pipeline.preprocess import Preprocessor, create_preprocessor
from pipeline.publish import Publisher
from pipeline.app.config_diff import diff_configs
from pipeline.scheduler import BatchScheduler, OverflowPolicy
from pipeline.app.service_status import ServiceReporter
from pipeline.sources import create_source
from pipeline.app.turn_order import TurnOrder
from pipeline.workers import DecodeWorkerPool, WorkerCamera

log = logging.getLogger("pipeline.app.daemon")

_END = object()  # end-of-stream marker passed down the stage queues
# Shutdown budget (SIGTERM must exit within 5 s): sources, then the drain, then the stage threads.
SOURCE_JOIN_S = 1.0
LATE_NAMED = 5  # cameras named in the "did not stop" warning
PUBLISH_IDLE_S = 0.2  # the publish thread serves subscriptions at least this often
DRAIN_S = 1.5  # after the sources stop, queued frames get this long to be published
THREAD_JOIN_S = 0.5
BIND_BACKEND_S = 120.0  # start() waits this long for the infer thread's backend.bind_to_thread()
# Test/diagnostic aid, never for production: delay every inference batch by this many ms, to
# simulate a model slower than the cameras (tests/integration/reliability/test_reliability_load.py).
TEST_INFER_DELAY_ENV = "PIPELINE_TEST_INFER_DELAY_MS"


def simulated_infer_delay_s(environ: Mapping[str, str] | None = None) -> float:
    """Seconds from PIPELINE_TEST_INFER_DELAY_MS (0 when unset); ValueError (one line) if invalid."""
    raw = (os.environ if environ is None else environ).get(TEST_INFER_DELAY_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        ms = float(raw)
    except ValueError:
        ms = -1.0
    if not 0 <= ms <= 60_000:
        raise ValueError(f"{TEST_INFER_DELAY_ENV}={raw!r}: expected milliseconds from 0 to 60000")
    return ms / 1000.0


@dataclass
class _CameraThread:
    """A camera whose source runs on a thread of this process (WorkerCamera: in a decode worker)."""

    config: CameraConfig
    stop: threading.Event
    thread: threading.Thread

    def request_stop(self) -> None:
        self.stop.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def is_alive(self) -> bool:
        return self.thread.is_alive()


def _join_cameras(cams: list) -> None:
    """Wait for stopped cameras (threads here, or in decode workers) under one shared deadline; the
    ones still running are left behind, named in one line (a hundred cameras, one warning)."""
    deadline = time.monotonic() + SOURCE_JOIN_S
    for cam in cams:
        cam.join(max(0.0, deadline - time.monotonic()))
    late = [cam.config.id for cam in cams if cam.is_alive()]
    if late:
        named = ", ".join(late[:LATE_NAMED]) + (f" and {len(late) - LATE_NAMED} more" if len(late) > LATE_NAMED else "")
        log.warning("%d camera(s) did not stop within %.1fs, left to end on their own: %s", len(late),
                    SOURCE_JOIN_S, named)


@dataclass(frozen=True)
class DaemonOptions:
    status_interval_s: float = 5.0  # 0 turns the periodic per-camera lines off
    wait_for_subscribers: int = 0  # hold sources until this many subscribers are connected
    wait_for_subscribers_timeout_s: float = 10.0
    on_status_lines: Callable[[list[str]], None] | None = None
    load_config: Callable[[], PipelineConfig] | None = None  # re-reads the config file on reload
    notifier: SystemdNotifier | None = None  # sd_notify (READY, STATUS, WATCHDOG); None: not used


class Daemon:
    def __init__(self, config: PipelineConfig, options: DaemonOptions = DaemonOptions(),
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.options = options
        self.metrics = metrics or Metrics()
        self.board = CameraStatusBoard(self.metrics)
        self._cameras: dict[str, _CameraThread | WorkerCamera] = {}
        self._workers: DecodeWorkerPool | None = None
        self._threads: list[threading.Thread] = []
        self._abort = threading.Event()  # drain deadline passed: drop instead of process
        self._inference_done = threading.Event()  # batch, infer and postprocess threads have drained
        sched = config.scheduler
        self.scheduler = BatchScheduler(sched.max_batch, sched.max_wait_ms / 1000.0,
                                        sched.queue_per_camera, metrics=self.metrics)
        # Adaptive batching: the next batch is formed only once inference has taken the previous
        # one, so while the model is busy frames gather in the scheduler and the next batch is
        # fuller (max_wait_ms still bounds the wait when the model is idle). One batch waits,
        # preprocessed, while another runs, so the model never waits for preprocessing.
        # (Holding a partial batch back further while the model runs was tried and measured
        # worse: the model then waits for preprocessing; docs/BENCHMARKS.md.) With N model instances,
        # N batches may run and N wait.
        self._infer_slot = threading.Semaphore(config.model.instances)
        self._infer_order = TurnOrder()  # results leave the infer threads in batch order
        self._infer_running = config.model.instances  # infer threads not yet ended (the last one ends postprocess)
        self._infer_running_lock = threading.Lock()
        self._infer_q: queue.Queue[object] = queue.Queue(maxsize=2)
        self._postprocess_q: queue.Queue[object] = queue.Queue(maxsize=2)
        self._publish_q: queue.Queue[object] = queue.Queue(maxsize=sched.max_batch * 8 + 256)
        self.metrics.stage_queue_depth.labels("infer").set_function(self._infer_q.qsize)
        self.metrics.stage_queue_depth.labels("postprocess").set_function(self._postprocess_q.qsize)
        self.metrics.stage_queue_depth.labels("publish").set_function(self._publish_q.qsize)
        self._zmq: zmq.Context | None = None
        self._publisher: Publisher | None = None
        self._backends: list[Backend] = []  # one per model instance, each run by its own infer thread
        self._preprocess: Preprocessor | None = None
        self._infer_delay_s = 0.0  # see TEST_INFER_DELAY_ENV
        # the frames inside the infer threads and the postprocess stage right now, counted as dropped
        # if shutdown gives up on them
        self._in_flight: dict[str, tuple[Frame, ...]] = {"postprocess": ()}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Create every stage (errors here are startup errors) and start the threads."""
        cfg = self.config
        self._infer_delay_s = simulated_infer_delay_s()
        if self._infer_delay_s:
            log.warning("%s: every inference batch is delayed by %g ms (a test aid, not for production)",
                        TEST_INFER_DELAY_ENV, self._infer_delay_s * 1000)
        for _ in range(cfg.model.instances):
            self._backends.append(create_backend(cfg.model, cfg.scheduler.max_batch, cfg.preprocess.device))
        # The backend knows what its model/engine takes (an fp16 request may have fallen back to fp32).
        dtype = np.dtype(self._backends[0].input_dtype)
        self._preprocess = create_preprocessor(cfg.preprocess.device, cfg.model.input_size, dtype,
                                               cfg.scheduler.max_batch, cfg.preprocess.num_threads,
                                               device_id=cfg.decode.gpu_id, on_reject=self._reject_frame)
        self._postprocess = YoloPostprocessor(cfg.model.labels, cfg.model.score_threshold,
                                              cfg.model.iou_threshold, cfg.model.max_detections,
                                              on_truncated=self._candidates_truncated)
        self._zmq = zmq.Context()
        try:
            self._publisher = Publisher(self._zmq, cfg.publish.bind, cfg.publish.high_water_mark,
                                        cfg.publish.linger_ms, self.metrics, curve=cfg.publish.curve,
                                        max_connections=cfg.publish.max_subscribers)
        except Exception:
            self._zmq.term()
            raise
        if self.options.wait_for_subscribers:
            got = self._publisher.wait_for_subscribers(self.options.wait_for_subscribers,
                                                       self.options.wait_for_subscribers_timeout_s)
            log.info("%d subscriber(s) connected", got)
        self._start_thread(self._publish_loop, "publish")
        self._start_thread(self._postprocess_loop, "postprocess")
        for lane, backend in enumerate(self._backends):
            # one at a time: a thread preparing its model (CUDA graph capture) needs the GPU to itself
            bound = threading.Event()
            name = "infer" if len(self._backends) == 1 else f"infer-{lane}"
            self._in_flight[name] = ()
            self._start_thread(self._infer_loop, name, name, backend, bound)
            if not bound.wait(BIND_BACKEND_S):
                log.warning("inference: the model was not ready on thread %s after %.0f s; starting anyway",
                            name, BIND_BACKEND_S)
        self._start_thread(self._batch_loop, "batch")
        if cfg.decode.workers:
            self._workers = DecodeWorkerPool(cfg.decode, cfg.decode.workers, self.metrics, self._submit_status)
        for cam in cfg.cameras:
            self.add_camera(cam)
        log.info("started %d camera(s), model %s (%s, %s), batch<=%d, wait<=%gms, publishing on %s",
                 len(cfg.cameras), cfg.model.path.name, cfg.model.backend, cfg.preprocess.device,
                 cfg.scheduler.max_batch, cfg.scheduler.max_wait_ms, cfg.publish.bind)

    def _start_thread(self, target: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def add_camera(self, cam: CameraConfig) -> None:
        policy = OverflowPolicy.DROP_OLDEST if cam.is_live else OverflowPolicy.WAIT
        # A decode worker's back-pressured camera may have this many frames here (queued, or in the
        # batch being preprocessed: the preprocessor lets go of pixels as soon as it has copied them).
        credits = 2 * self.config.scheduler.queue_per_camera if policy is OverflowPolicy.WAIT else None
        self.scheduler.add_camera(cam.id, policy, capacity=credits if self._workers is not None else None)
        stop = threading.Event()

        def sink(frame: Frame) -> None:
            # A removed camera's thread (even one abandoned past its join deadline) must not feed
            # the queue of a restarted camera with the same id.
            if stop.is_set():
                self.metrics.frames_dropped.labels(frame.camera_id, "stopped").inc()
            else:
                self._submit_frame(frame)

        try:
            if self._workers is not None:
                self._cameras[cam.id] = self._workers.add_camera(cam, sink, credits, stop)
                return
            source = create_source(cam, self.config.decode, sink, self._submit_status, stop, self.metrics)
        except Exception:
            self.scheduler.remove_camera(cam.id)
            raise
        thread = threading.Thread(target=source.run, name=f"camera-{cam.id}", daemon=True)
        self._cameras[cam.id] = _CameraThread(cam, stop, thread)
        thread.start()

    def remove_cameras(self, camera_ids: Iterable[str]) -> None:
        """Stop these cameras (each publishes `stopped`) and forget them; the others keep going."""
        cams = [self._cameras.pop(cid) for cid in camera_ids if cid in self._cameras]
        for cam in cams:
            cam.request_stop()
        for cam in cams:  # also releases a source blocked on its full queue
            self._count_dropped(tuple(self.scheduler.remove_camera(cam.config.id)), "removed")
        _join_cameras(cams)
        for cam in cams:
            self.board.forget(cam.config.id)

    def reload(self) -> bool:
        """Re-read the config: added cameras start, removed ones stop, changed ones restart,
        the rest keep streaming. An invalid config is rejected and the running one keeps going."""
        if self.options.load_config is None:
            log.warning("reload: this daemon has no config file to re-read")
            return False
        if self.scheduler.closed:
            log.warning("reload: ignored while draining")
            return False
        try:
            new = self.options.load_config()
        except ConfigError as exc:
            self.metrics.config_reloads.labels("rejected").inc()
            log.error("reload rejected, the running config stays: %s", exc)
            return False
        change = diff_configs(self.config, new)
        for section in change.needs_restart:
            log.warning("reload: %s: changes here apply only at start; restart the service to use them",
                        section)
        self.remove_cameras(change.removed + tuple(c.id for c in change.changed))
        for cam in change.changed + change.added:
            try:
                self.add_camera(cam)
            except Exception as exc:  # noqa: BLE001 - one camera must not stop the reload of the others
                log.error("reload: camera %s: cannot start: %s", cam.id, exc)
        running = [c for c in change.applied.cameras if c.id in self._cameras]
        self.config = change.applied.model_copy(update={"cameras": running})
        if self._publisher is not None and self.config.publish.curve is not None:
            log.info("reload: %d authorized CURVE client key(s)", self._publisher.reload_curve_clients())
        self.metrics.config_reloads.labels("applied").inc()
        log.info("reload applied: %s", change.summary())
        return True

    def run(self, stop: threading.Event, reload_requested: threading.Event | None = None) -> int:
        """Supervise until `stop` is set or every (file) camera has ended and drained.
        `reload_requested` (set by SIGHUP) makes the loop re-read the config."""
        interval = self.options.status_interval_s
        next_lines = time.monotonic() + interval if interval > 0 else float("inf")
        service = ServiceReporter(self.options.notifier or SystemdNotifier(None), self.metrics, self.board)
        service.ready()  # start() has built every stage and started every thread
        while not stop.wait(0.1):
            if reload_requested is not None and reload_requested.is_set():
                reload_requested.clear()
                service.reloading()
                self.reload()
                service.ready()
            service.tick()
            if self._inference_done.is_set():
                break
            if not self.scheduler.closed and self._cameras and all(
                    not c.is_alive() for c in self._cameras.values()):
                log.info("every camera has ended; draining")
                self.scheduler.close()
            if time.monotonic() >= next_lines:
                next_lines += interval
                self._emit_status_lines()
        service.stopping()
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Reverse order: sources, scheduler, stages (with a drain deadline), publisher, context."""
        for cam in self._cameras.values():
            cam.request_stop()
        self.scheduler.close()  # also releases sources blocked on a full queue
        _join_cameras(list(self._cameras.values()))
        if not self._inference_done.wait(DRAIN_S):
            log.warning("drain deadline passed; remaining queued frames are counted as dropped")
            self._abort.set()
            self._inference_done.wait(THREAD_JOIN_S)  # the batch being inferred may still go out
        # Only now does the publisher get its end marker, so the sources' last status
        # events ('stopped', 'eof') and every detection are sent before it closes.
        self._publish_q.put(_END)
        for t in self._threads:
            t.join(THREAD_JOIN_S)
            if t.is_alive():
                log.warning("%s thread did not stop within %.1fs", t.name, THREAD_JOIN_S)
        self._count_unpublished()
        for closable in (self._preprocess, *self._backends, self._workers):
            if closable is not None:  # workers last: frames in their GPU memory are gone by now
                closable.close()
        if self._publisher is not None:
            self._publisher.close()
        if self._zmq is not None:
            self._zmq.term()
        batches = self.metrics.value("pipeline_batch_size_count")
        frames = self.metrics.value("pipeline_batch_size_sum")
        log.info("summary batches %d, frames %d, mean batch %.2f", batches, frames,
                 frames / batches if batches else 0.0)
        for line in self.board.summary_lines():
            log.info("summary %s", line, extra=NOT_RATE_LIMITED)

    # ------------------------------------------------------------------ wiring callbacks

    def _submit_frame(self, frame: Frame) -> None:
        if not self.scheduler.put(frame):
            self.metrics.frames_dropped.labels(frame.camera_id, "shutdown").inc()

    def _submit_status(self, event: StatusEvent) -> None:
        self.board.update(event)  # the source itself logs the transition
        self.metrics.camera_up.labels(event.camera_id).set(1 if event.state.value == "up" else 0)
        for state in CameraState:
            self.metrics.camera_state.labels(event.camera_id, state.value).set(1 if state is event.state else 0)
        self._publish_q.put(event)

    def _reject_frame(self, frame: Frame, reason: str) -> None:
        log.warning("camera %s: frame %d dropped by preprocess: %s", frame.camera_id, frame.index, reason)
        self.metrics.frames_dropped.labels(frame.camera_id, "bad_frame").inc()

    def _candidates_truncated(self, frame: Frame) -> None:
        self.metrics.candidates_truncated.labels(frame.camera_id).inc()
        log.warning("camera %s: frame %d: all %d device-selected candidates passed the score threshold; "
                    "some detections may be missing (raise model.max_candidates)", frame.camera_id,
                    frame.index, self.config.model.max_candidates)

    def _count_dropped(self, frames: tuple[Frame, ...], reason: str) -> None:
        for f in frames:
            self.metrics.frames_dropped.labels(f.camera_id, reason).inc()

    def _count_unpublished(self) -> None:
        """At exit, frames that will never be published are counted as dropped, not lost silently:
        detections queued after the publisher's end marker, and a batch whose inference outlived
        the shutdown budget."""
        if not self._inference_done.is_set():
            frames = tuple(f for stage in self._in_flight.values() for f in stage)
            log.warning("inference still running at exit; its %d frame(s) are counted as dropped", len(frames))
            self._count_dropped(frames, "shutdown")
        while True:
            try:
                item = self._publish_q.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, FrameDetections):
                self.metrics.frames_dropped.labels(item.camera_id, "shutdown").inc()

    def _emit_status_lines(self) -> None:
        lines = self.board.status_lines()
        if self.options.on_status_lines:
            self.options.on_status_lines(lines)
        else:
            for line in lines:
                log.info("status %s", line, extra=NOT_RATE_LIMITED)

    # ------------------------------------------------------------------ stage threads

    def _batch_loop(self) -> None:
        assert self._preprocess is not None
        try:
            while True:
                if not self._infer_slot.acquire(timeout=0.2):
                    if self.scheduler.closed_and_empty:
                        break
                    continue
                batch = self.scheduler.next_batch(timeout=0.2)
                if batch is None:
                    self._infer_slot.release()
                    if self.scheduler.closed_and_empty:
                        break
                    continue
                if self._abort.is_set():
                    self._infer_slot.release()
                    self._count_dropped(batch.frames, "shutdown")
                    continue
                if not self._run_preprocess(batch):
                    self._infer_slot.release()
        finally:
            self._infer_q.put(_END)

    def _run_preprocess(self, batch: FrameBatch) -> bool:
        """Preprocess and queue for inference; False if nothing was queued."""
        assert self._preprocess is not None
        started = time.perf_counter()
        try:
            tensor = self._preprocess(batch)
        except Exception as exc:  # one bad batch must not stop the pipeline
            log.error("preprocess failed for a batch of %d: %s", len(batch), exc)
            self._count_dropped(batch.frames, "preprocess_error")
            return False
        self.metrics.stage_seconds.labels("preprocess").observe(time.perf_counter() - started)
        if not tensor.frames:  # every frame of the batch may have been rejected (and counted)
            return False
        self._infer_q.put(tensor)
        return True

    def _drain(self, inbox: queue.Queue[Any], run: Callable[[Any], None]) -> None:
        """Run `run(item)` for each item of `inbox` until the end marker. Past the drain deadline
        (abort) items are counted as dropped instead."""
        while True:
            item = inbox.get()
            if item is _END:
                return
            if self._abort.is_set():
                self._count_dropped(item.frames, "shutdown")
                continue
            run(item)

    def _infer_loop(self, name: str, backend: Backend, bound: threading.Event) -> None:
        try:
            self._bind_backend(backend, bound)
            while True:
                ticket, tensor = self._infer_order.take(self._infer_q)
                if tensor is _END:
                    self._infer_q.put(_END)  # for the other infer threads
                    return
                self._infer_slot.release()  # once inference takes a batch, the batch thread may form the next
                result = None
                try:
                    result = self._run_inference(name, backend, tensor)
                finally:  # every ticket takes its turn, or the later batches' threads wait for ever
                    with self._infer_order.turn(ticket):
                        if result is not None:
                            self._postprocess_q.put(result)
                        self._in_flight[name] = ()
        finally:
            with self._infer_running_lock:
                self._infer_running -= 1
                last = self._infer_running == 0
            if last:
                self._postprocess_q.put(_END)

    def _bind_backend(self, backend: Backend, bound: threading.Event) -> None:
        """On an infer thread, before the batch thread and the cameras start (start() waits):
        per-thread model state such as ONNX Runtime's CUDA graphs, which must be captured while no
        other thread uses the GPU."""
        try:
            backend.bind_to_thread()
        except Exception as exc:  # noqa: BLE001 - the model still runs, without that state
            log.error("inference: preparing the model on its thread failed (it runs anyway): %s", exc)
        finally:
            bound.set()

    def _run_inference(self, name: str, backend: Backend, tensor: TensorBatch) -> InferenceResult | None:
        """The batch's result, or None when it was dropped (counted). Its frames stay in _in_flight
        until the caller has passed the result on."""
        if self._abort.is_set():
            self._count_dropped(tensor.frames, "shutdown")
            return None
        self._in_flight[name] = tensor.frames
        started = time.perf_counter()
        if self._infer_delay_s:
            time.sleep(self._infer_delay_s)
        try:
            result = backend.infer(tensor)
        except Exception as exc:
            log.error("inference failed for a batch of %d: %s", len(tensor.frames), exc)
            self._count_dropped(tensor.frames, "inference_error")
            self._in_flight[name] = ()
            return None
        self.metrics.stage_seconds.labels("inference").observe(time.perf_counter() - started)
        return result

    def _postprocess_loop(self) -> None:
        try:
            self._drain(self._postprocess_q, self._run_postprocess)
        finally:
            self._inference_done.set()

    def _run_postprocess(self, result: InferenceResult) -> None:
        self._in_flight["postprocess"] = result.frames
        started = time.perf_counter()
        try:
            per_frame = self._postprocess(result)
        except Exception as exc:
            log.error("postprocess failed for a batch of %d: %s", len(result.frames), exc)
            self._count_dropped(result.frames, "postprocess_error")
            self._in_flight["postprocess"] = ()
            return
        self.metrics.stage_seconds.labels("postprocess").observe(time.perf_counter() - started)
        for fd in per_frame:
            self._publish_q.put(fd)
        self._in_flight["postprocess"] = ()

    def _publish_loop(self) -> None:
        assert self._publisher is not None
        while True:
            try:
                item = self._publish_q.get(timeout=PUBLISH_IDLE_S)
            except queue.Empty:  # nothing to send: still apply subscriptions (they must not pile up)
                self._publisher.serve_subscriptions()
                continue
            if item is _END:
                return
            try:
                if isinstance(item, FrameDetections):
                    self._publisher.publish_detections(item)
                elif isinstance(item, StatusEvent):
                    self._publisher.publish_status(item)
            except Exception as exc:  # a bad message is logged; the next one still goes out
                log.error("publish failed: %s", exc)
                if isinstance(item, FrameDetections):
                    self.metrics.frames_dropped.labels(item.camera_id, "publish_error").inc()
