"""Network cameras (RTSP, HTTP(S), HLS, ...): decode with PyAV and reconnect forever.

Blocking FFmpeg calls are bounded by PyAV's interrupt-callback timeout (`av.open(timeout=)`),
which works for every protocol; FFmpeg's own `rw_timeout` does not reach the RTSP demuxer's
socket. That timeout is also the stall detector: a connection that delivers nothing for
`camera.timeout_s` fails with ExitError and is reconnected.

Stop must be honoured within a second even while FFmpeg is blocked (connecting, stalled), but
PyAV offers no way to interrupt a read from outside. So the connect/decode loop runs in a reader
thread; `run()` supervises it and returns promptly on stop. A reader still blocked then exits by
itself within `timeout_s`, delivering nothing more (see Source._deliver / _transition).
"""
from __future__ import annotations

import logging
import threading
import time

import av.error
from av.codec.hwaccel import HWAccel

from pipeline.frame import CameraState
from pipeline.sources.base import Ending, Source, redact_url, register_source
from pipeline.sources.decoding import OpenFailed, decode_pictures, ffmpeg_message, gpu_hwaccel, open_video

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.5
MAX_RETRY_S = 10.0
STOP_POLL_S = 0.1  # how often run() looks at stop while the reader works
STOP_GRACE_S = 0.5  # how long run() waits for the reader to finish after stop


class _NothingDecodable(Exception):
    """Data keeps arriving but none of it decodes."""


class ReconnectBackoff:
    """Delays before reconnect attempts: 0.5 s doubling to 10 s; reset after a good frame."""

    def __init__(self, first_s: float = FIRST_RETRY_S, max_s: float = MAX_RETRY_S) -> None:
        self._first = first_s
        self._max = max_s
        self._next = first_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._max, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self._first


def open_options(url: str) -> dict[str, str]:
    """FFmpeg demuxer options per protocol."""
    if url.lower().startswith(("rtsp://", "rtsps://")):
        # TCP interleaving survives NAT/firewalls and does not lose packets; skip audio tracks.
        # Probing 0.5 s instead of FFmpeg's default halves (re)connect time (1.2 s -> 0.6 s
        # against GStreamer); a late SPS is still handled by the decoder itself.
        return {"rtsp_transport": "tcp", "allowed_media_types": "video", "analyzeduration": "500000"}
    return {}


@register_source
class NetworkSource(Source):
    type_key = "network"

    def _stream(self) -> Ending:
        outcome: list[Ending] = []  # set by the reader only if it fails unexpectedly
        reader = threading.Thread(target=self._read_guarded, args=(outcome,), daemon=True,
                                  name=f"source-reader-{self.camera.id}")
        reader.start()
        while reader.is_alive() and not self._stop.wait(STOP_POLL_S):
            pass
        reader.join(STOP_GRACE_S)
        if reader.is_alive():
            log.info("camera %s: reader still blocked in FFmpeg; it exits within %.1f s",
                     self.camera.id, self.camera.timeout_s)
        if outcome:
            return outcome[0]
        return Ending(CameraState.STOPPED, "stop requested")

    def _read_guarded(self, outcome: list[Ending]) -> None:
        try:
            self._reconnect_forever()
        except Exception as exc:  # noqa: BLE001 - reported as DOWN by run()
            log.exception("camera %s: network reader failed", self.camera.id)
            outcome.append(Ending(CameraState.DOWN,
                                  f"source failed: {type(exc).__name__}: {self._describe(exc)}"))

    def _reconnect_forever(self) -> None:
        backoff = ReconnectBackoff()
        hwaccel = gpu_hwaccel(self.decode, self.camera.id)
        while not self._stop.is_set():
            reason = self._session(backoff, hwaccel)
            if self._stop.is_set():
                return
            delay = backoff.next_delay()
            self._metrics.reconnects.labels(self.camera.id).inc()
            self._transition(CameraState.RECONNECTING, f"{reason}; retry in {delay:g} s")
            if self._stop.wait(delay):
                return

    def _session(self, backoff: ReconnectBackoff, hwaccel: HWAccel | None) -> str:
        """One connection: deliver frames until it fails. Returns why it ended."""
        url = self.camera.url
        timeout_s = self.camera.timeout_s
        log.debug("camera %s: connecting to %s", self.camera.id, redact_url(url))
        started = time.monotonic()
        try:
            video = open_video(url, hwaccel, options=open_options(url), timeout=(timeout_s, timeout_s))
        except OpenFailed as exc:
            # An interrupted open surfaces as ExitError or (RTSP) as InvalidDataError; the clock
            # tells the truth.
            if time.monotonic() - started >= timeout_s:
                return f"cannot connect: no answer within {timeout_s:g} s"
            return f"cannot connect: {exc}"
        last_picture = time.monotonic()

        def on_corrupt(reason: str) -> None:
            self._count_decode_error(reason)
            # Connected and receiving, but only garbage: as good as a stall.
            if time.monotonic() - last_picture > timeout_s:
                raise _NothingDecodable(f"no decodable picture for {timeout_s:g} s (last error: {reason})")

        try:
            for picture in decode_pictures(video, on_corrupt):
                if not self._deliver(picture.image, picture.pts):
                    return "stop requested"
                backoff.reset()
                last_picture = time.monotonic()
            return "stream ended (connection closed)"
        except _NothingDecodable as exc:
            return str(exc)
        except av.error.ExitError:
            return f"stalled: no data for {timeout_s:g} s"
        except av.error.FFmpegError as exc:
            return f"read failed: {ffmpeg_message(exc)}"
        finally:
            video.close()
