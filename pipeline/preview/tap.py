"""The two taps: camera frames (for watched cameras or pending snapshots) and published detections.

Frames lose their pixels after preprocessing, and detections come much later, so the frame tap
keeps a host copy of at most one frame per camera (the one it grabbed last) until that frame's
detections are published; the detections tap then hands the pair on. A grabbed frame whose
detections never come (dropped before inference) is replaced by the next grab.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from pipeline.frame import Frame, FrameDetections

WATCH_S = 5.0  # a camera is watched for this long after a client asked for it
PENDING_MAX_S = 5.0  # a grab still unpaired after this long is replaced
RATE_WINDOW = 32  # publish times kept per camera for the page's fps figure


@dataclass(frozen=True)
class SnapshotRequest:
    camera_id: str
    reason: str  # "class:person", "zone_enter", ...
    path: str  # where the writer will put it (decided now, so an event message can carry it)


@dataclass(frozen=True, eq=False)
class Pair:
    """A frame's host pixels and the detections that were published for it."""

    image: np.ndarray  # HxWx3 uint8 RGB
    detections: FrameDetections
    seq: int
    snapshots: tuple[SnapshotRequest, ...]
    watched: bool
    full_size: bool = False  # someone has this camera's own page open


@dataclass
class _Grab:
    index: int
    image: np.ndarray
    at: float
    snapshots: list[SnapshotRequest] = field(default_factory=list)
    watched: bool = False
    full_size: bool = False


@dataclass
class CameraRate:
    """Publish times and the last latency, for the page (not the metrics: those are Prometheus')."""

    published_at: deque = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))
    latency_s: float | None = None

    def fps(self, now: float) -> float:
        times = [t for t in list(self.published_at) if now - t <= 5.0]  # list(): one C call, safe while appended
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


def host_pixels(image: Any) -> np.ndarray | None:
    """A host copy of a frame's pixels: numpy is copied (the frame's array is the pipeline's);
    a GPU image (DeviceImage, SharedDeviceImage) through its to_host(), so no decode-worker buffer is
    held past this call. None if there is no way to the host."""
    if image is None:
        return None
    to_host = getattr(image, "to_host", None)
    if to_host is not None:
        return np.ascontiguousarray(to_host())
    if isinstance(image, np.ndarray):
        return image.copy()
    return None


class PreviewTap:
    def __init__(self, fps: float, on_pair: Callable[[Pair], None], clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._interval = 1.0 / fps
        self._on_pair = on_pair
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._watched_until: dict[str, float] = {}
        self._full_size_until: dict[str, float] = {}
        self._snapshot_requests: dict[str, list[SnapshotRequest]] = {}
        self._last_grab: dict[str, float] = {}
        self._pending: dict[str, _Grab] = {}
        self.rates: dict[str, CameraRate] = {}

    # ---------------------------------------------------------------- clients and triggers

    def watch(self, camera_ids: Iterable[str], full_size: Iterable[str] = ()) -> None:
        until = self._clock() + WATCH_S
        with self._lock:
            for cid in camera_ids:
                self._watched_until[cid] = until
            for cid in full_size:
                self._watched_until[cid] = self._full_size_until[cid] = until

    def watched(self) -> set[str]:
        now = self._clock()
        with self._lock:
            return {cid for cid, until in self._watched_until.items() if until >= now}

    def request_snapshot(self, request: SnapshotRequest, detections: FrameDetections | None = None) -> None:
        """Snapshot the frame of `detections` if it is the one grabbed, else the camera's next frame."""
        with self._lock:
            grab = self._pending.get(request.camera_id)
            if grab is not None and detections is not None and grab.index == detections.index:
                grab.snapshots.append(request)
            else:
                self._snapshot_requests.setdefault(request.camera_id, []).append(request)

    # ---------------------------------------------------------------- taps

    def on_frame(self, frame: Frame) -> None:
        """Camera threads (or the decode-worker receiver), every frame: must cost ~nothing when
        nobody watches. Plain dict reads without the lock here: a stale answer only shifts a grab
        by one frame."""
        cam = frame.camera_id
        snapshot_wanted = cam in self._snapshot_requests
        until = self._watched_until.get(cam)
        if not snapshot_wanted and until is None:
            return
        now = self._clock()
        watched = until is not None and until >= now
        if not snapshot_wanted:
            if not watched or now - self._last_grab.get(cam, -1e9) < self._interval:
                return
        pending = self._pending.get(cam)
        if pending is not None and now - pending.at < PENDING_MAX_S and not snapshot_wanted:
            return  # its detections are on the way; at most one copy per camera
        pixels = host_pixels(frame.image)
        if pixels is None:
            return
        with self._lock:
            requests = self._snapshot_requests.pop(cam, [])
            old = self._pending.get(cam)
            if old is not None and old.snapshots:  # replaced before paired: keep its requests
                requests = old.snapshots + requests
            full_size = self._full_size_until.get(cam, -1.0) >= now
            self._pending[cam] = _Grab(frame.index, pixels, now, requests, watched, full_size)
            self._last_grab[cam] = now

    def on_published(self, detections: FrameDetections, seq: int) -> None:
        """The publish thread, after each detections message: pair with the grabbed frame."""
        cam = detections.camera_id
        rate = self.rates.get(cam)
        if rate is None:
            rate = self.rates[cam] = CameraRate()
        rate.published_at.append(self._clock())
        rate.latency_s = self._wall() - detections.captured_at
        grab = self._pending.get(cam)
        if grab is None or detections.index < grab.index:
            return
        with self._lock:
            if self._pending.get(cam) is not grab:
                return
            del self._pending[cam]
            if detections.index != grab.index:  # the grabbed frame was dropped before inference
                self._last_grab.pop(cam, None)  # so the next frame is grabbed, not one a whole interval later
                if grab.snapshots:
                    self._snapshot_requests.setdefault(cam, [])[:0] = grab.snapshots
                return
        self._on_pair(Pair(grab.image, detections, seq, tuple(grab.snapshots), grab.watched, grab.full_size))

    def forget(self, camera_id: str) -> None:
        with self._lock:
            for table in (self._watched_until, self._full_size_until, self._snapshot_requests, self._last_grab,
                          self._pending):
                table.pop(camera_id, None)
        self.rates.pop(camera_id, None)
