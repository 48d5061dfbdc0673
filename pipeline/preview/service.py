"""The preview as the daemon sees it: two taps, start, close. Owns the encode thread, the frame
store the HTTP server reads, the snapshot writer and the preview's metrics."""
from __future__ import annotations

import logging
import queue
import resource
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from prometheus_client import Counter

from pipeline.config.preview import PreviewConfig
from pipeline.frame import Detection, Frame, FrameDetections
from pipeline.observe.metrics import Metrics
from pipeline.preview.drawing import draw_detections, draw_regions, encode_jpeg, scaled_to
from pipeline.preview.snapshots import ClassAppearsTrigger, SnapshotNamer, SnapshotWriter
from pipeline.preview.tap import Pair, PreviewTap

if TYPE_CHECKING:  # the analytics package imports scipy: only when tracking is on
    from pipeline.analytics.stage import CameraAnalytics

log = logging.getLogger("pipeline.preview")

ENCODE_QUEUE = 8  # pairs waiting for the encode thread; the oldest goes when full
FRAMES_KEPT = 4  # encoded frames kept per camera, so a page's image URL outlives the next frame


@dataclass(frozen=True)
class EncodedFrame:
    camera_id: str
    index: int
    seq: int
    captured_at: float
    width: int  # source size: the coordinate space of the boxes
    height: int
    jpeg: bytes
    detections: tuple[dict, ...]


class FrameStore:
    """The last few encoded frames per camera, by frame index."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: dict[str, OrderedDict[int, EncodedFrame]] = {}

    def put(self, frame: EncodedFrame) -> None:
        with self._lock:
            kept = self._frames.setdefault(frame.camera_id, OrderedDict())
            kept[frame.index] = frame
            while len(kept) > FRAMES_KEPT:
                kept.popitem(last=False)

    def latest(self, camera_id: str) -> EncodedFrame | None:
        with self._lock:
            kept = self._frames.get(camera_id)
            return next(reversed(kept.values())) if kept else None

    def get(self, camera_id: str, index: int) -> EncodedFrame | None:
        with self._lock:
            return self._frames.get(camera_id, {}).get(index)

    def forget(self, camera_id: str) -> None:
        with self._lock:
            self._frames.pop(camera_id, None)


class PreviewService:
    def __init__(self, config: PreviewConfig, metrics: Metrics, board: Any,
                 cameras: Callable[[], list[Any]],
                 analytics: Callable[[str], CameraAnalytics | None] | None = None) -> None:
        """board: the daemon's CameraStatusBoard (state, counters); cameras: the running camera
        configs (read again on every page load, so a reload shows; zones/lines are drawn from them);
        analytics: a camera's live tracks and zone/line counts (Analytics.snapshot), when tracking is on."""
        self.config = config
        self._cameras = cameras
        self._analytics = analytics
        registry = metrics.registry
        self.frames_encoded = Counter("pipeline_preview_frames_encoded", "Preview frames drawn and encoded",
                                      ["camera"], registry=registry)
        self.frames_skipped = Counter("pipeline_preview_frames_skipped", "Preview frames dropped because "
                                      "the encode thread was behind", registry=registry)
        self.snapshots = Counter("pipeline_preview_snapshots", "Event snapshots: written, or dropped and why",
                                 ["result"], registry=registry)
        self.cpu_seconds = Counter("pipeline_preview_cpu_seconds", "CPU time of the preview's own threads "
                                   "(drawing and JPEG, snapshot writes, HTTP); the taps in the pipeline's threads "
                                   "are not in it (about 1 us per frame, docs/preview.md)", ["thread"],
                                   registry=registry)
        self.http_rejected = Counter("pipeline_preview_http_rejected", "Preview HTTP requests refused or "
                                     "abandoned, by reason", ["reason"], registry=registry)
        self.board = board
        self.store = FrameStore()
        self.tap = PreviewTap(config.fps, self._enqueue)
        snap = config.snapshots
        self.writer = SnapshotWriter(snap, self.snapshots, self.cpu_seconds.labels("snapshots")) if snap else None
        self._namer = SnapshotNamer(snap.dir) if snap else None
        self._trigger = ClassAppearsTrigger(snap.classes, snap.cooldown_s) if snap else None
        self._class_snapshots = bool(snap and snap.classes)
        self._queue: queue.Queue[Pair | None] = queue.Queue(maxsize=ENCODE_QUEUE)
        self._thread = threading.Thread(target=self._encode_loop, name="preview-encode", daemon=True)
        self._server = None

    def camera_configs(self) -> list[Any]:
        return list(self._cameras())

    def camera_analytics(self, camera_id: str) -> CameraAnalytics | None:
        return self._analytics(camera_id) if self._analytics is not None else None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        from pipeline.preview.server import PreviewServer

        self._server = PreviewServer(self)  # first: a bind error leaves no thread behind
        self._thread.start()
        log.info("preview: http://%s/ (%s)", self.config.bind if self._server.port == self.config.port
                 else f"{self.config.host}:{self._server.port}",
                 "token required" if self.config.token else "loopback, no token")

    @property
    def port(self) -> int:
        return self._server.port if self._server else 0

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._thread.is_alive():
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                self._drop_oldest()
                self._queue.put_nowait(None)
            self._thread.join(1.0)
        if self.writer is not None:
            self.writer.close()

    # ---------------------------------------------------------------- taps (called by the daemon)

    def on_frame(self, frame: Frame) -> None:
        self.tap.on_frame(frame)

    def on_published(self, detections: FrameDetections, seq: int) -> None:
        try:
            if self._class_snapshots:
                assert self._trigger is not None and self._namer is not None
                for label in self._trigger(detections):
                    self.tap.request_snapshot(self._namer.request(detections.camera_id, f"class:{label}"),
                                              detections)
            self.tap.on_published(detections, seq)
        except Exception as exc:  # noqa: BLE001 - the publish thread must never fail for the preview
            log.error("preview: detections tap: %s", exc)

    def on_event(self, camera_id: str, kind: str) -> str | None:
        """An analytics event (issue 17: "zone_enter", "line_cross") happened on this camera now.
        Returns the path the snapshot will be written to (for the event message), or None when
        this kind does not snapshot or is cooling down. The file appears a moment later (the
        camera's next frame, annotated), or never if the disk drops it (counted)."""
        snap = self.config.snapshots
        if snap is None or kind not in snap.events:
            return None
        assert self._trigger is not None and self._namer is not None
        if not self._trigger.cooled_down(camera_id, kind):
            return None
        request = self._namer.request(camera_id, kind)
        self.tap.request_snapshot(request)
        return request.path

    def forget(self, camera_id: str) -> None:
        self.tap.forget(camera_id)
        self.store.forget(camera_id)

    # ---------------------------------------------------------------- encode thread

    def _enqueue(self, pair: Pair) -> None:
        """On the publish thread: never waits; when the encoder is behind the oldest pair goes."""
        while True:
            try:
                self._queue.put_nowait(pair)
                return
            except queue.Full:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        try:
            dropped = self._queue.get_nowait()
        except queue.Empty:
            return
        if dropped is not None:
            self.frames_skipped.inc()
            if dropped.snapshots:
                self.snapshots.labels("dropped_encoder_behind").inc(len(dropped.snapshots))

    def _encode_loop(self) -> None:
        cpu = ThreadCpu(self.cpu_seconds.labels("encode"))
        while True:
            pair = self._queue.get()
            if pair is None:
                return
            try:
                self._encode(pair)
            except Exception as exc:  # noqa: BLE001 - a bad frame must not end the preview
                log.error("preview: camera %s frame %d: cannot draw/encode: %s", pair.detections.camera_id,
                          pair.detections.index, exc)
            cpu.add()

    def cpu_total_s(self) -> float:
        return sum(s.value for m in self.cpu_seconds.collect() for s in m.samples if s.name.endswith("_total"))

    def _encode(self, pair: Pair) -> None:
        fd = pair.detections
        # tiles are small: full size only for a camera's own page and for snapshots
        width = self.config.max_width if pair.full_size or pair.snapshots else self.config.tile_width
        bgr, scale = scaled_to(pair.image, width)
        camera = next((c for c in self._cameras() if c.id == fd.camera_id), None)
        if camera is not None:
            draw_regions(bgr, camera.analytics, fd.width, fd.height, scale)
        draw_detections(bgr, fd.detections, scale)
        jpeg = encode_jpeg(bgr, self.config.jpeg_quality)
        self.store.put(EncodedFrame(fd.camera_id, fd.index, pair.seq, fd.captured_at, fd.width, fd.height, jpeg,
                                    tuple(_detection_json(d) for d in fd.detections)))
        self.frames_encoded.labels(fd.camera_id).inc()
        if pair.snapshots and self.writer is not None and self.config.snapshots is not None:
            quality = self.config.snapshots.jpeg_quality
            snap_jpeg = jpeg if quality == self.config.jpeg_quality else encode_jpeg(bgr, quality)
            for request in pair.snapshots:
                self.writer.submit(request.path, snap_jpeg)


class ThreadCpu:
    """Adds the calling thread's CPU time since the last call to a counter (getrusage RUSAGE_THREAD:
    one syscall, ~1 us). Create and call it on the thread being measured."""

    def __init__(self, counter: Any) -> None:
        self._counter = counter
        self._last = _thread_cpu_s()

    def add(self) -> None:
        now = _thread_cpu_s()
        self._counter.inc(max(0.0, now - self._last))
        self._last = now


def _thread_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def _detection_json(det: Detection) -> dict:
    out = {"label": det.label, "class_id": det.class_id, "score": round(det.score, 4),
           "box": [round(v, 1) for v in det.box]}
    if det.track_id is not None:
        out["track_id"] = det.track_id
    return out
