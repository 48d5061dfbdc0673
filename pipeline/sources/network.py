"""Network cameras (RTSP, HTTP(S), HLS, ...): decode with PyAV and reconnect forever.

Blocking FFmpeg calls are bounded by PyAV's interrupt-callback timeout (`av.open(timeout=)`),
which works for every protocol; FFmpeg's own `rw_timeout` does not reach the RTSP demuxer's
socket. That timeout is also the stall detector: a connection that delivers nothing for
`camera.timeout_s` fails with ExitError and is reconnected.

Stop must be honoured within a second even while FFmpeg is blocked (connecting, stalled), but
PyAV offers no way to interrupt a read from outside. So the connect/decode loop runs in a reader
thread; `run()` supervises it and returns promptly on stop. A reader still blocked then exits by
itself within `timeout_s`, delivering nothing more (see Source._deliver / _transition); the
process does not finalize while one is (readers.py).
"""
from __future__ import annotations

import logging
import time

import av.error

from pipeline.frame import CameraState
from pipeline.observe.redaction import redact_url
from pipeline.sources.base import Ending, Source, register_source
from pipeline.sources.hls_loops import is_hls_url, playlist_loop
from pipeline.sources.decoding import OpenFailed, ffmpeg_message, open_video
from pipeline.sources.nvdec import PictureDecoder, picture_decoder
from pipeline.sources.readers import FfmpegReader
from pipeline.sources.reachability import (PortState, endpoint_of, foreign_answer, port_state, redirect_loop,
                                           resolve_failure)

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.5
MAX_RETRY_S = 10.0
STOP_POLL_S = 0.1  # how often run() looks at stop while the reader works
STOP_GRACE_S = 0.5  # how long run() waits for the reader to finish after stop
PROBE_TIMEOUT_S = 0.5  # one diagnostic TCP connect / answer check
WATCH_INTERVAL_S = 0.5  # while a refusing server is down: how often to look whether it listens again


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
        reader = FfmpegReader(self.camera.id, self._read_guarded, (outcome,))
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
        decoder = picture_decoder(self.decode, self.camera.id, self._warn, self._retire)
        try:
            self._reconnect_with(decoder, backoff)
        finally:
            decoder.close()

    def _reconnect_with(self, decoder: PictureDecoder, backoff: ReconnectBackoff) -> None:
        while not self._stop.is_set():
            reason = self._session(backoff, decoder)
            if self._stop.is_set():
                return
            delay = backoff.next_delay()
            self._metrics.reconnects.labels(self.camera.id).inc()
            self._transition(CameraState.RECONNECTING, f"{reason}; retry in {delay:g} s")
            if self._wait_to_retry(delay):
                return

    def _wait_to_retry(self, delay: float) -> bool:
        """Sleep `delay` s; True if stop was set. While the server refuses connections (its
        process is down) its port is watched, so a restarted server is reconnected at once
        instead of after a backoff of up to MAX_RETRY_S."""
        deadline = time.monotonic() + delay
        endpoint = endpoint_of(self.camera.url)
        watch = endpoint is not None and port_state(endpoint, PROBE_TIMEOUT_S) is PortState.REFUSED
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(remaining, WATCH_INTERVAL_S) if watch else remaining):
                return True
            if watch and endpoint is not None and port_state(endpoint, PROBE_TIMEOUT_S) is PortState.OPEN:
                log.debug("camera %s: server listens again; reconnecting now", self.camera.id)
                break
        return self._stop.is_set()

    def _session(self, backoff: ReconnectBackoff, decoder: PictureDecoder) -> str:
        """One connection: deliver frames until it fails. Returns why it ended."""
        url = self.camera.url
        timeout_s = self.camera.timeout_s
        log.debug("camera %s: connecting to %s", self.camera.id, redact_url(url))
        started = time.monotonic()
        if is_hls_url(url) and (loop := playlist_loop(url, min(timeout_s, PROBE_TIMEOUT_S * 4))):
            return f"cannot connect: {loop}; not opened (FFmpeg would request it without end)"
        try:
            video = open_video(url, options=open_options(url), timeout=(timeout_s, timeout_s))
        except OpenFailed as exc:
            return self._open_failure(exc, time.monotonic() - started)
        last_picture = time.monotonic()

        def on_corrupt(reason: str) -> None:
            self._count_decode_error(reason)
            # Connected and receiving, but only garbage: as good as a stall.
            if time.monotonic() - last_picture > timeout_s:
                raise _NothingDecodable(f"no decodable picture for {timeout_s:g} s (last error: {reason})")

        pictures = 0
        try:
            for picture in decoder.pictures(video, on_corrupt):
                # FFmpeg's H.264 parser hands out a stream's last picture only when a read fails (it
                # cannot know the picture is complete before the next one starts). A picture after a
                # silence as long as the read timeout is that flush: the connection is dead already,
                # and waiting for the next read to time out too would double the stall detection.
                # (Not for the first picture: a long GOP may legitimately keep it waiting.)
                read_interrupted = pictures > 0 and time.monotonic() - last_picture >= timeout_s
                if not self._deliver(picture.image, picture.pts):
                    return "stop requested"
                backoff.reset()
                last_picture = time.monotonic()
                pictures += 1
                if read_interrupted:
                    return f"stalled: no data for {timeout_s:g} s"
            return "stream ended (connection closed)"
        except _NothingDecodable as exc:
            return str(exc)
        except av.error.ExitError:
            return f"stalled: no data for {timeout_s:g} s"
        except av.error.FFmpegError as exc:
            return f"read failed: {ffmpeg_message(exc)}"
        finally:
            video.close()

    def _open_failure(self, exc: OpenFailed, waited_s: float) -> str:
        """Why an open failed, in words. FFmpeg says "Input/output error" for a host that does not
        resolve, and times out alike on a silent server and on one that answers with garbage."""
        timeout_s = self.camera.timeout_s
        endpoint = endpoint_of(self.camera.url)
        if endpoint is not None and (unresolved := resolve_failure(endpoint.host)):
            return f"cannot connect: cannot resolve host {endpoint.host}: {unresolved}"
        # An interrupted open surfaces as ExitError or (RTSP) as InvalidDataError; the clock
        # tells the truth. Data FFmpeg could not parse may also come fast (garbage that happens to
        # end a response early): ask the server ourselves in both cases.
        # A server that closes at once reads "Invalid data" (RTSP) or "End of file" (HTTP): any
        # failure but a refused port gets the probe.
        timed_out = waited_s >= timeout_s
        refused = endpoint is not None and "refused" in str(exc).lower()
        foreign = foreign_answer(endpoint, PROBE_TIMEOUT_S) if endpoint is not None and not refused else None
        if foreign:
            return f"cannot connect: {foreign}"
        if timed_out:
            return f"cannot connect: no answer within {timeout_s:g} s"
        if endpoint is not None and endpoint.scheme == "http" and (loop := redirect_loop(self.camera.url, PROBE_TIMEOUT_S)):
            return f"cannot connect: {loop}"
        return f"cannot connect: {exc}"
