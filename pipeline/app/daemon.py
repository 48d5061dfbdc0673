"""Wires the stages into threads and queues, and shuts them down in reverse order.

    cameras -> BatchScheduler -> batch (preprocess) -> infer (xN) -> postprocess -> publish (ZeroMQ)
    sources' StatusEvents -----------------------------------------------------> publish

Every stage is one StageThread (app/stages.py) between two bounded queues; cameras are handles in a
CameraRegistry (app/cameras.py); the loop that runs, reloads and reports to systemd is the
Supervisor (app/supervisor.py). The daemon holds no stage logic and no loop of its own.

With `model.instances: N` there are N infer threads, each with its own copy of the model, taking
batches from one queue; their results go on to postprocess in the order the batches came
(app/turn_order.py), so every camera's messages stay in frame order. Postprocess has its own thread
so the infer thread hands the GPU its next batch as soon as one returns.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import zmq

from pipeline.app.camera_status import CameraStatusBoard
from pipeline.app.cameras import CameraHandle, CameraRegistry, CameraThread, join_cameras
from pipeline.app.stages import END, QueueInbox, SchedulerInbox, StageShared, StageThread, Work
from pipeline.app.supervisor import Supervisor
from pipeline.app.systemd_notify import SystemdNotifier
from pipeline.config import CameraConfig, PipelineConfig
from pipeline.frame import DetectionsBatch, Frame, FrameDetections, FrameEvents, StatusEvent
from pipeline.app.gpu_assignment import device_path, single_gpu_notice
from pipeline.app.interpreter import GcPauses, StartupFreeze, apply_switch_interval
from pipeline.app.lookahead import FINISH, LookaheadInbox, LookaheadInfer
from pipeline.app.publish_queue import PublishQueue
from pipeline.infer import Backend, create_backend
from pipeline.observe.logs import NOT_RATE_LIMITED
from pipeline.observe.metrics import Metrics
from pipeline.postprocess import DetectionPostprocessor
from pipeline.preprocess import Preprocessor, create_preprocessor
from pipeline.publish import Publisher
from pipeline.scheduler import BatchScheduler, OverflowPolicy
from pipeline.workers import DecodeWorkerPool

log = logging.getLogger("pipeline.app.daemon")

# Shutdown budget (SIGTERM must exit within 5 s): sources (cameras.JOIN_S), then the drain, then the stage threads.
PUBLISH_IDLE_S = 0.2  # the publish thread serves subscriptions at least this often
# detections batches that may wait for the publisher (8 x max_batch frames: 64 ms at 4,000 frames/s)
# and status/event messages beside them (a camera starting or stopping each sends one)
PUBLISH_BATCHES = 8
PUBLISH_MESSAGES = 256
DRAIN_S = 1.5  # after the sources stop, queued frames get this long to be published
THREAD_JOIN_S = 0.5
STOP_BUDGET_S = 4.5  # the decode workers may take until then; the publisher and the process exit follow


@dataclass(frozen=True)
class DaemonOptions:
    status_interval_s: float = 5.0  # 0 turns the periodic per-camera lines off
    wait_for_subscribers: int = 0  # hold sources until this many subscribers are connected
    wait_for_subscribers_timeout_s: float = 10.0
    on_status_lines: Callable[[list[str]], None] | None = None
    load_config: Callable[[], PipelineConfig] | None = None  # re-reads the config file on reload
    notifier: SystemdNotifier | None = None  # sd_notify (READY, STATUS, WATCHDOG); None: not used
    # applied to each model copy / the preprocessor as they are built (test and diagnostic aids,
    # e.g. app/slow_inference.py); None: used as built
    wrap_backend: Callable[[Backend], Backend] | None = None
    wrap_preprocessor: Callable[[Preprocessor], Preprocessor] | None = None
    wrap_postprocessor: Callable[[DetectionPostprocessor], Any] | None = None  # e.g. the bench's added detections


def _one(step: Callable[[Any], Any]) -> Work:
    """A stage work function from a step that makes exactly one output."""
    return lambda item: (step(item),)


def _preprocess_work(preprocess: Preprocessor) -> Work:
    # every frame of a batch may have been rejected (and counted): then nothing goes on
    return lambda batch: [t for t in (preprocess(batch),) if t.frames]


def _postprocess_work(postprocess: DetectionPostprocessor) -> Work:
    # one DetectionsBatch per inference batch (none when every frame was dropped)
    return lambda result: [b for b in (DetectionsBatch(tuple(postprocess(result))),) if b.items]


def _publish_work(publisher: Publisher, shared: StageShared, preview: Any = None) -> Work:
    def refused(fd: FrameDetections, exc: Exception) -> None:  # one frame; the batch's others go out
        log.error("publish failed for camera %s frame %d: %s", fd.camera_id, fd.index, exc)
        shared.count_dropped((fd.camera_id,), "publish_error")

    def publish(item: DetectionsBatch | FrameEvents | StatusEvent) -> tuple[()]:
        if isinstance(item, DetectionsBatch):
            seqs = publisher.publish_detections_batch(item.items, on_error=refused)
            if preview is not None:  # preview (issue 19): detections tap, after the send
                for fd, seq in zip(item.items, seqs):
                    if seq is not None:
                        preview.on_published(fd, seq)
        elif isinstance(item, FrameEvents):
            publisher.publish_events(with_snapshots(item, preview) if preview is not None else item)
        else:
            publisher.publish_status(item)
        return ()
    return publish


class PublishInbox(QueueInbox):
    """The publish stage's queue; while it is empty the publisher still applies subscriptions (they
    are no longer applied by ZeroMQ on its own, so they must not pile up: publish/publisher.py)."""

    def __init__(self, q: "queue.Queue[Any]", publisher: Publisher) -> None:
        super().__init__(q)
        self._publisher = publisher

    def take(self) -> Any:
        try:
            return self.queue.get(timeout=PUBLISH_IDLE_S)
        except queue.Empty:
            self._publisher.serve_subscriptions()
            return None


def _analytics_work(analytics: Any) -> Work:
    def track(batch: DetectionsBatch) -> tuple[Any, ...]:
        """Track ids into each frame's detections, then the frames' events (if any). A failure costs
        that frame its track ids and events, never its detections."""
        tracked: list[FrameDetections] = []
        events: list[FrameEvents] = []
        for fd in batch.items:
            try:
                out, frame_events = analytics(fd)
            except Exception as exc:  # noqa: BLE001
                log.error("analytics failed for camera %s frame %d: %s", fd.camera_id, fd.index, exc)
                out, frame_events = fd, None
            tracked.append(out)
            if frame_events is not None:
                events.append(frame_events)
        return (DetectionsBatch(tuple(tracked)), *events)
    return track


def with_snapshots(fe: FrameEvents, preview: Any) -> FrameEvents:
    """The events, each with the path of the preview's snapshot of it where it takes one."""
    events = tuple(dataclasses.replace(ev, snapshot=path) if (path := preview.on_event(fe.camera_id, ev.kind)) else ev
                   for ev in fe.events)
    return dataclasses.replace(fe, events=events)


def _published_cameras(item: DetectionsBatch | FrameEvents | StatusEvent) -> tuple[str, ...]:
    """The frames a publish item stands for (status and events messages stand for none)."""
    return item.camera_ids if isinstance(item, DetectionsBatch) else ()


class Daemon:
    def __init__(self, config: PipelineConfig, options: DaemonOptions = DaemonOptions(),
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.options = options
        self.metrics = metrics or Metrics()
        self.board = CameraStatusBoard(self.metrics)
        self.cameras = CameraRegistry()
        sched = config.scheduler
        self.scheduler = BatchScheduler(sched.max_batch, sched.max_wait_ms / 1000.0,
                                        sched.queue_per_camera, metrics=self.metrics)
        self.backends: list[Backend] = []  # one per model instance, each run by its own infer thread
        self._lookahead: LookaheadInfer | None = None  # the infer work with one model copy
        self._shared = StageShared(self.metrics, abort=threading.Event())
        self._infer_q = self._stage_queue("infer", queue.Queue(maxsize=2))
        self._postprocess_q = self._stage_queue("postprocess", queue.Queue(maxsize=2))
        # detections batches (PUBLISH_BATCHES at most: app/publish_queue.py) and status and event messages
        self._publish_q = self._stage_queue("publish", PublishQueue(PUBLISH_BATCHES, PUBLISH_MESSAGES))
        self._stages: list[StageThread] = []  # the frames' stages before publish, in the order frames pass them
        self._publish_stage: StageThread | None = None
        self._workers: DecodeWorkerPool | None = None
        self._preprocess: Preprocessor | None = None
        self._zmq: zmq.Context | None = None
        self._publisher: Publisher | None = None
        self._gc_freeze = StartupFreeze()  # PIPELINE_GC: a bad value is a one-line start error
        self._gc_pauses = GcPauses(lambda generation, s: self.metrics.gc_pause.labels(str(generation)).observe(s))
        self._preview: Any = None  # preview (issue 19): PreviewService when config.preview is set
        self.analytics: Any = None  # tracking, zones, lines (pipeline/analytics/), when analytics.tracking
        if config.analytics.tracking:
            from pipeline.analytics.stage import Analytics  # scipy.optimize: ~0.3 s to import, only when on
            self.analytics = Analytics(config.analytics, config.cameras, self.metrics)

    def _stage_queue(self, name: str, q: "queue.Queue[Any]") -> "queue.Queue[Any]":
        """`q`, its depth exported as pipeline_stage_queue_depth{queue=name}."""
        self.metrics.stage_queue_depth.labels(name).set_function(q.qsize)
        return q

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Create every stage (errors here are startup errors) and start the threads: downstream
        first, cameras last."""
        cfg = self.config
        apply_switch_interval()  # the stage threads share one interpreter lock (app/interpreter.py)
        self._gc_pauses.start()
        self._device_path = device_path(cfg)  # one GPU id for decode, preprocess and model (gpu_assignment.py)
        if notice := single_gpu_notice(cfg):
            log.warning("%s", notice)
        preprocess, postprocess = self._build_steps()
        if cfg.preview is not None:  # preview (issue 19): its own HTTP server and threads, off the detection path
            from pipeline.preview import PreviewService
            self._preview = PreviewService(cfg.preview, self.metrics, self.board, lambda: self.config.cameras,
                                           self.analytics.snapshot if self.analytics is not None else None)
            self._preview.start()
        self._wire_stages(preprocess, postprocess, self._open_publisher())
        if cfg.decode.workers:
            self._workers = DecodeWorkerPool(self._device_path.decode, cfg.decode.workers, self.metrics, self._submit_status)
        # before the cameras: their objects may form cycles that a reload must be able to collect
        self._gc_freeze.freeze()
        for cam in cfg.cameras:
            self.add_camera(cam)
        log.info("started %d camera(s), model %s (%s, %s), batch<=%d, wait<=%gms, publishing on %s",
                 len(cfg.cameras), cfg.model.path.name, cfg.model.backend, cfg.preprocess.device,
                 cfg.scheduler.max_batch, cfg.scheduler.max_wait_ms, cfg.publish.bind)

    def _build_steps(self) -> tuple[Preprocessor, DetectionPostprocessor]:
        """The model copies (self.backends), the preprocessor and the postprocessor."""
        cfg = self.config
        wrap_backend = self.options.wrap_backend or (lambda backend: backend)
        for _ in range(cfg.model.instances):
            self.backends.append(wrap_backend(create_backend(cfg.model, cfg.scheduler.max_batch, self._device_path.model_device)))
        # The backend knows what its model/engine takes (an fp16 request may have fallen back to fp32).
        dtype = np.dtype(self.backends[0].input_dtype)
        spec = self.backends[0].model_spec  # format, classes and input conventions (infer/model_spec.py)
        self._preprocess = create_preprocessor(cfg.preprocess.device, spec.input.size, dtype,
                                               cfg.scheduler.max_batch, cfg.preprocess.num_threads,
                                               device_id=self._device_path.gpu, on_reject=self._reject_frame,
                                               convention=spec.convention(), kernel=cfg.preprocess.kernel,
                                               nv12_frames=cfg.decode.nvdec_output == "nv12",
                                               high_priority=cfg.model.backend == "onnxruntime"
                                               and cfg.model.onnxruntime.queue_ahead)
        preprocess = (self.options.wrap_preprocessor or (lambda p: p))(self._preprocess)
        postprocess = DetectionPostprocessor.for_model(spec, cfg.model.score_threshold, cfg.model.iou_threshold,
                                                       cfg.model.max_detections, on_truncated=self._candidates_truncated,
                                                       on_nan=self._nan_output)
        if self.options.wrap_postprocessor is not None:
            postprocess = self.options.wrap_postprocessor(postprocess)
        return preprocess, postprocess

    def _open_publisher(self) -> Publisher:
        """Bind the PUB socket; wait for subscribers when asked to."""
        cfg = self.config
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
        return self._publisher

    def _wire_stages(self, preprocess: Preprocessor, postprocess: DetectionPostprocessor, publisher: Publisher) -> None:
        """The wiring: each stage is one StageThread from its inbox to its outbox. A new stage (say
        analytics between postprocess and publish) is one more queue (_stage_queue) and one more
        StageThread in this list; see docs/architecture.md, "How to add a stage"."""
        shared = self._shared
        batches = SchedulerInbox(self.scheduler, self.config.model.instances)
        self._stages = [
            StageThread("batch", batches, [_preprocess_work(preprocess)], shared, outbox=self._infer_q,
                        timed_as="preprocess", error_name="preprocess", on_discard=batches.release),
            self._infer_stage(batches),
            StageThread("postprocess", QueueInbox(self._postprocess_q), [_postprocess_work(postprocess)], shared,
                        outbox=self._publish_q, ends_outbox=False,  # status events share the queue
                        timed_as="postprocess"),
        ]
        if self.analytics is not None:  # tracking, zones, lines: between postprocess and publish
            analytics_q = self._stage_queue("analytics", queue.Queue(maxsize=4))  # batches
            self._stages[-1] = StageThread("postprocess", QueueInbox(self._postprocess_q), [_postprocess_work(postprocess)],
                                           shared, outbox=analytics_q, timed_as="postprocess")
            self._stages.append(StageThread("analytics", QueueInbox(analytics_q), [_analytics_work(self.analytics)],
                                            shared, outbox=self._publish_q, ends_outbox=False,
                                            cameras_of=_published_cameras, timed_as="analytics"))
        # ended by shutdown() once the stages above have drained; publishes all it is given
        self._publish_stage = StageThread("publish", PublishInbox(self._publish_q, publisher),
                                          [_publish_work(publisher, shared, self._preview)],
                                          shared, cameras_of=_published_cameras, drops_on_abort=False)
        for stage in (self._publish_stage, *reversed(self._stages)):
            stage.start()

    def _infer_stage(self, batches: SchedulerInbox) -> StageThread:
        """One model copy: one thread that keeps two batches on the GPU when the backend queues ahead
        (app/lookahead.py). Several: one thread per copy, each prepared on its thread before the
        cameras start, results leaving in batch order. Taking a batch lets the batch thread form the next."""
        shared = self._shared
        prepare = [b.bind_to_thread for b in self.backends]
        if len(self.backends) == 1:
            def taken(item: Any) -> None:
                if item is not FINISH:  # the inbox's own marker, not a batch
                    batches.release()

            self._lookahead = LookaheadInfer(self.backends[0], shared)
            return StageThread("infer", LookaheadInbox(self._infer_q, self._lookahead), [self._lookahead], shared,
                               outbox=self._postprocess_q, timed_as="inference", error_name="inference",
                               prepare=prepare, on_take=taken)
        return StageThread("infer", QueueInbox(self._infer_q), [_one(b.infer) for b in self.backends], shared,
                           outbox=self._postprocess_q, timed_as="inference", error_name="inference", ordered=True,
                           prepare=prepare, on_take=batches.release)

    def run(self, stop: threading.Event, reload_requested: threading.Event | None = None) -> int:
        """Supervise (app/supervisor.py) until `stop` is set or every file camera has ended and
        drained, then shut down."""
        return Supervisor(self).run(stop, reload_requested)

    @property
    def draining(self) -> bool:
        """No new frames are taken (every camera ended, or shutdown began)."""
        return self.scheduler.closed

    @property
    def drained(self) -> bool:
        """The stages before publish have finished every frame they will get."""
        return self._frames_drained().is_set()

    def begin_drain(self) -> None:
        self.scheduler.close()

    def _frames_drained(self) -> threading.Event:
        """Set when the last stage before publish has ended (each ends after the one before it)."""
        return self._stages[-1].done if self._stages else threading.Event()

    def shutdown(self) -> None:
        """Reverse order: sources, scheduler, stages (with a drain deadline), publisher, context."""
        stop_started = time.monotonic()
        cameras = self.cameras.stop_all()
        self.scheduler.close()  # also releases sources blocked on a full queue
        join_cameras(cameras)
        drained = self._frames_drained()
        if self._stages and not drained.wait(DRAIN_S):
            log.warning("drain deadline passed; remaining queued frames are counted as dropped")
            self._shared.abort.set()
            drained.wait(THREAD_JOIN_S)  # the batch being inferred may still go out
        # Only now does the publisher get its end marker, so the sources' last status
        # events ('stopped', 'eof') and every detection are sent before it closes.
        self._publish_q.put(END)
        for stage in (*self._stages, self._publish_stage):
            if stage is not None:
                stage.join(THREAD_JOIN_S)
        self._count_unpublished(drained.is_set())
        if self._preview is not None:  # preview (issue 19): its taps are quiet now
            self._preview.close()
        for closable in (self._preprocess, *self.backends):
            if closable is not None:
                closable.close()
        if self._workers is not None:  # last: frames in their GPU memory are gone by now
            # what the stop budget has left: a worker with dozens of NVDEC decoders needs more than
            # WORKER_EXIT_S to leave on its own (135 cameras in 4 workers on the H200, issue 22)
            self._workers.close(deadline=stop_started + STOP_BUDGET_S)
        if self._publisher is not None:
            self._publisher.close()
        if self._zmq is not None:
            self._zmq.term()
        self._gc_pauses.stop()
        self._gc_freeze.unfreeze()
        batches, frames = self._stages[0].taken() if self._stages else (0, 0)
        log.info("summary batches %d, frames %d, mean batch %.2f", batches, frames,
                 frames / batches if batches else 0.0)
        for line in self.board.summary_lines() + self.analytics_lines():
            log.info("summary %s", line, extra=NOT_RATE_LIMITED)

    def status_lines(self) -> list[str]:
        """Per camera: state, rates, drops; and its analytics (live tracks, zone/line counts)."""
        return self.board.status_lines() + self.analytics_lines()

    def analytics_lines(self) -> list[str]:
        if self.analytics is None:
            return []
        lines = [(cam, self.analytics.status_line(cam)) for cam in sorted(c.id for c in self.config.cameras)]
        return [f"{cam + ':':<12} analytics {line}" for cam, line in lines if line is not None]

    def apply_rule_changes(self, rules_changed: Iterable[CameraConfig], restarted: Iterable[CameraConfig],
                           removed: Iterable[str]) -> None:
        """After a reload: new zones/lines apply at once (tracks kept); restarted and removed
        cameras start their tracking afresh."""
        if self.analytics is None:
            return
        for cam in (*rules_changed, *restarted):
            self.analytics.set_rules(cam)
        for cam_id in removed:
            self.analytics.reset_camera(cam_id)

    # ------------------------------------------------------------------ cameras

    def add_camera(self, cam: CameraConfig) -> None:
        policy = OverflowPolicy.DROP_OLDEST if cam.is_live else OverflowPolicy.WAIT
        # A decode worker's camera may have this many frames here (queued, or in the batch being
        # preprocessed: the preprocessor lets go of pixels as soon as it has copied them); out of
        # credits, a file waits and a live camera drops its newest (workers/messages.py).
        credits = 2 * self.config.scheduler.queue_per_camera
        # back-pressured: a queue as deep as the credits, so the worker's puts never block
        capacity = credits if self._workers is not None and policy is OverflowPolicy.WAIT else None
        self.scheduler.add_camera(cam.id, policy, capacity=capacity)
        stop = threading.Event()

        def sink(frame: Frame) -> None:
            # A removed camera's thread (even one abandoned past its join deadline) must not feed
            # the queue of a restarted camera with the same id.
            if stop.is_set():
                self.metrics.frames_dropped.labels(frame.camera_id, "stopped").inc()
            else:
                self._submit_frame(frame)

        try:
            handle: CameraHandle
            if self._workers is not None:
                handle = self._workers.add_camera(cam, sink, credits, stop)
            else:
                handle = CameraThread.start(cam, device_path(self.config).decode, sink, self._submit_status, stop, self.metrics)
        except Exception:
            self.scheduler.remove_camera(cam.id)
            raise
        self.cameras.add(handle)

    def remove_cameras(self, camera_ids: Iterable[str]) -> None:
        """Stop these cameras (each publishes `stopped`) and forget them; the others keep going."""
        cams = self.cameras.pop(camera_ids)
        for cam in cams:
            cam.request_stop()
        for cam in cams:  # also releases a source blocked on its full queue
            self._shared.count_dropped((f.camera_id for f in self.scheduler.remove_camera(cam.config.id)), "removed")
        join_cameras(cams)
        for cam in cams:
            self.board.forget(cam.config.id)

    def adopt_config(self, applied: PipelineConfig) -> None:
        """After a reload: `applied` with the cameras that really run is the running config; CURVE
        client keys are re-read."""
        self.config = applied.model_copy(update={"cameras": [c for c in applied.cameras if c.id in self.cameras]})
        if self._publisher is not None and self.config.publish.curve is not None:
            log.info("reload: %d authorized CURVE client key(s)", self._publisher.reload_curve_clients())

    # ------------------------------------------------------------------ callbacks handed to the stages

    def _submit_frame(self, frame: Frame) -> None:
        if self._preview is not None:  # preview (issue 19): frame tap, while the frame still has its pixels
            self._preview.on_frame(frame)
        if not self.scheduler.put(frame):
            self.metrics.frames_dropped.labels(frame.camera_id, "shutdown").inc()

    def _submit_status(self, event: StatusEvent) -> None:
        self.board.update(event)  # the source itself logs the transition
        self._publish_q.put(event)

    def _reject_frame(self, frame: Frame, reason: str) -> None:
        log.warning("camera %s: frame %d dropped by preprocess: %s", frame.camera_id, frame.index, reason)
        self.metrics.frames_dropped.labels(frame.camera_id, "bad_frame").inc()

    def _candidates_truncated(self, frame: Frame) -> None:
        self.metrics.candidates_truncated.labels(frame.camera_id).inc()
        log.warning("camera %s: frame %d: all %d device-selected candidates passed the score threshold; "
                    "some detections may be missing (raise model.max_candidates)", frame.camera_id,
                    frame.index, self.config.model.max_candidates)

    def _nan_output(self, frame: Frame) -> None:
        """The model gave NaN for this frame: dropped and counted; its batch's other frames go on."""
        self.metrics.frames_dropped.labels(frame.camera_id, "nan_output").inc()

    def _count_unpublished(self, drained: bool) -> None:
        """At exit, frames that will never be published are counted as dropped, not lost silently:
        detections queued after the publisher's end marker, and a batch whose inference outlived
        the shutdown budget."""
        if self._lookahead is not None:  # a batch queued on the GPU that was never finished
            self._shared.count_dropped(self._lookahead.abandon(), "shutdown")
        if self._stages and not drained:
            cameras = tuple(c for stage in self._stages for c in stage.in_flight())
            log.warning("inference still running at exit; its %d frame(s) are counted as dropped", len(cameras))
            self._shared.count_dropped(cameras, "shutdown")
        while True:
            try:
                item = self._publish_q.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, DetectionsBatch):
                self._shared.count_dropped(item.camera_ids, "shutdown")
