"""Source ABC and the source registry (the kinds are declared in pipeline/sources/plugins.py).

A Source turns one camera into Frames (via `sink`) and StatusEvents (via `status`).
`run()` is the whole life of the camera thread: it reports STARTING, then whatever the
subclass's `_stream()` does, then exactly one terminal state (EOF, DOWN or STOPPED).
"""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar, TypeVar

import numpy as np

from pipeline.config import CameraConfig, DecodeConfig
from pipeline.frame import TERMINAL_STATES, CameraState, Frame, StatusEvent
from pipeline.observe.metrics import Metrics
from pipeline.observe.redaction import redact_text, redact_url
from pipeline.registry import ImplementationRegistry
from pipeline.sources.plugins import SOURCE_KEYS, source_plugin

log = logging.getLogger(__name__)

FrameSink = Callable[[Frame], None]
# Takes a slow teardown (an NVDEC decoder's, sources/nvdec.py) to run later, or never at process exit.
Retire = Callable[[Callable[[], None]], None]
StatusSink = Callable[[StatusEvent], None]

@dataclass(frozen=True)
class Ending:
    """How `_stream()` finished: the terminal state and why."""

    state: CameraState
    reason: str


class Source(ABC):
    """One camera. Subclasses set `type_key` and implement `_stream()`."""

    type_key: ClassVar[str]

    def __init__(self, camera: CameraConfig, decode: DecodeConfig, sink: FrameSink,
                 status: StatusSink, stop: threading.Event, metrics: Metrics, retire: Retire | None = None) -> None:
        self.camera = camera
        self.decode = decode
        self._retire = retire  # takes the decoder's slow GPU teardown (sources/nvdec.py); None: at once
        self._sink = sink
        self._status = status
        self._stop = stop
        self._metrics = metrics
        self._lock = threading.Lock()  # network sources report from a reader thread too
        self._state: CameraState | None = None
        self._next_index = 0

    @property
    def state(self) -> CameraState | None:
        """The last state reported (None before run())."""
        return self._state

    @property
    def frames_delivered(self) -> int:
        return self._next_index

    def run(self) -> None:
        """The camera thread's body. Never raises; ends with one terminal status event."""
        self._transition(CameraState.STARTING, f"opening {redact_url(self.camera.url)}")
        try:
            ending = self._stream()
        except Exception as exc:  # noqa: BLE001 - a camera must never take its thread down loudly
            log.exception("camera %s: source failed", self.camera.id)
            ending = Ending(CameraState.DOWN, f"source failed: {type(exc).__name__}: {self._describe(exc)}")
        if self._stop.is_set() and ending.state is not CameraState.DOWN:
            ending = Ending(CameraState.STOPPED, "stop requested")
        self._transition(ending.state, ending.reason)

    @abstractmethod
    def _stream(self) -> Ending:
        """Deliver frames until the end, an unrecoverable error or `stop`; may raise."""

    # ------------------------------------------------------------------ helpers for subclasses

    def _deliver(self, image: np.ndarray, pts: float | None, captured_at: float | None = None) -> bool:
        """Hand one decoded picture on. False (and nothing delivered) once stop is set."""
        if self._stop.is_set():
            return False
        with self._lock:
            if self._state in TERMINAL_STATES:
                return False
            index = self._next_index
            self._next_index += 1
        if self._state is not CameraState.UP:
            self._transition(CameraState.UP, "receiving frames")
        if getattr(image, "pixel_format", None) == "nv12":  # its buffer has 1.5x the picture's rows
            height, width = image.height, image.width
        else:
            height, width = image.shape[:2]
        frame = Frame(
            camera_id=self.camera.id,
            index=index,
            pts=pts,
            captured_at=time.time() if captured_at is None else captured_at,
            width=width,
            height=height,
            image=image,
        )
        self._metrics.frames_decoded.labels(self.camera.id).inc()
        self._sink(frame)
        return True

    def _warn(self, reason: str) -> None:
        """Report a degradation that does not change the state (e.g. GPU decode fell back to the
        CPU): a warning in the log and a status event in the current state with this reason."""
        log.warning("camera %s: %s", self.camera.id, self._redact(reason))
        self._transition(self._state or CameraState.STARTING, reason)

    def _count_decode_error(self, reason: str) -> None:
        self._metrics.decode_errors.labels(self.camera.id).inc()
        log.debug("camera %s: skipped undecodable data: %s", self.camera.id, self._redact(reason))

    def _transition(self, state: CameraState, reason: str = "") -> None:
        """Report a state change. Nothing is reported after a terminal state."""
        reason = self._redact(reason)
        with self._lock:
            if self._state in TERMINAL_STATES:
                return
            self._state = state
        self._metrics.camera_up.labels(self.camera.id).set(1 if state is CameraState.UP else 0)
        log.info("camera %s: %s%s", self.camera.id, state.value, f" ({reason})" if reason else "")
        try:
            self._status(StatusEvent(self.camera.id, state, time.time(), reason))
        except Exception:  # noqa: BLE001 - a broken status consumer must not stop the camera
            log.exception("camera %s: status callback failed", self.camera.id)

    def _redact(self, text: str) -> str:
        return redact_text(text, self.camera.url)

    def _describe(self, exc: BaseException) -> str:
        """One line for a reason: FFmpeg's message without the (secret-bearing) URL."""
        message = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return self._redact(" ".join(str(message).split()))


_SourceT = TypeVar("_SourceT", bound=type[Source])
_SOURCES: ImplementationRegistry[type[Source]] = ImplementationRegistry(
    "source", "source type", SOURCE_KEYS, "pipeline/sources/plugins.py", "@register_source", source_plugin, ValueError)


def register_source(cls: _SourceT) -> _SourceT:
    """Class decorator: make `cls` the source for cameras whose resolved type is `cls.type_key`,
    which must be a kind declared in pipeline/sources/plugins.py (the config schema's list)."""
    return _SOURCES.register(cls)


def source_class(kind: str) -> type[Source]:
    """The Source class of a declared kind, importing its module on first use."""
    return _SOURCES.get(kind)


def create_source(camera: CameraConfig, decode: DecodeConfig, sink: FrameSink, status: StatusSink,
                  stop: threading.Event, metrics: Metrics, retire: Retire | None = None) -> Source:
    try:
        cls = source_class(camera.type)
    except ValueError as exc:
        raise ValueError(f"camera {camera.id}: {exc}") from None
    return cls(camera, decode, sink, status, stop, metrics, retire)
