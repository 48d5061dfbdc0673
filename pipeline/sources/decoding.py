"""The PyAV open + demux/decode loop shared by file and network sources."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterator

import av
import av.error
from av.codec.hwaccel import HWAccel
from av.container import InputContainer
from av.video.stream import VideoStream


log = logging.getLogger(__name__)

# Consecutive demux read errors (InvalidDataError) tolerated before the input counts as broken.
MAX_CONSECUTIVE_DEMUX_ERRORS = 50
DEFAULT_FPS = 25.0


class OpenFailed(Exception):
    """The input could not be opened as video; str() is a one-line reason without the URL.
    `invalid_data`: FFmpeg could not parse what it read (e.g. a server answering in another protocol)."""

    def __init__(self, reason: str, invalid_data: bool = False, errno: int | None = None) -> None:
        super().__init__(reason)
        self.invalid_data = invalid_data
        self.errno = errno  # the OS error behind it, when there is one (e.g. EMFILE: try again later)


@dataclass(frozen=True)
class DecodedPicture:
    image: Any  # HxWx3 uint8 RGB: numpy (CPU decode) or a device image (NVDEC, see nvdec.py)
    pts: float | None  # seconds


@dataclass
class VideoInput:
    """An open container and its first video stream. Close it when done."""

    container: InputContainer
    stream: VideoStream

    @property
    def fps(self) -> float:
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        try:
            value = float(rate) if rate else 0.0
        except (TypeError, ZeroDivisionError):
            value = 0.0
        return value if 0 < value <= 1000 else DEFAULT_FPS

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a broken input must not mask the real error
            log.debug("closing input failed", exc_info=True)


def ffmpeg_message(exc: BaseException) -> str:
    """FFmpeg's text for an error, without the file name/URL PyAV appends to str(exc)."""
    message = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())


def open_video(url: str, hwaccel: HWAccel | None = None, options: dict[str, str] | None = None,
               timeout: float | tuple[float, float] | None = None,
               thread_type: str | None = None) -> VideoInput:
    """Open `url` and pick its first video stream; raise OpenFailed with a one-line reason.

    `timeout` is PyAV's interrupt-callback timeout in seconds (open, read): it bounds every
    blocking FFmpeg call, for every protocol.
    """
    try:
        container = av.open(url, mode="r", options=options or {}, timeout=timeout, hwaccel=hwaccel)
    except (av.error.FFmpegError, OSError) as exc:  # OSError: e.g. a directory
        raise OpenFailed(ffmpeg_message(exc), invalid_data=isinstance(exc, av.error.InvalidDataError),
                         errno=getattr(exc, "errno", None)) from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise OpenFailed(f"no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if thread_type:
        stream.thread_type = thread_type
    return VideoInput(container, stream)


def demux_packets(video: VideoInput, on_corrupt: Callable[[str], None]) -> Iterator[av.Packet]:
    """The video stream's packets in decode order (the demux half of decode_pictures, shared with the
    NVDEC decoder). Unreadable chunks, up to MAX_CONSECUTIVE_DEMUX_ERRORS in a row, are reported
    through `on_corrupt` and skipped; other read errors propagate. Ends at end of input (the
    flushing packet PyAV yields last, with no data, is passed on too)."""
    stream = video.stream
    consecutive_demux_errors = 0
    packets = video.container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.InvalidDataError as exc:
            consecutive_demux_errors += 1
            if consecutive_demux_errors > MAX_CONSECUTIVE_DEMUX_ERRORS:
                raise
            on_corrupt(f"demux: {ffmpeg_message(exc)}")
            packets = video.container.demux(stream)  # a generator that raised is finished
            continue
        consecutive_demux_errors = 0
        yield packet


def decode_packet(packet: av.Packet, on_corrupt: Callable[[str], None]) -> Iterator[DecodedPicture]:
    """Decode one packet on the CPU (PyAV); undecodable packets are reported and skipped."""
    yield from decode_frames(packet.decode, on_corrupt)


def decode_frames(decode: Callable[[], list[av.VideoFrame]], on_corrupt: Callable[[str], None],
                  time_base: Fraction | None = None) -> Iterator[DecodedPicture]:
    """Run one decoder call and turn its frames into RGB pictures; a decoder error (per packet) or
    an unconvertible frame is reported and skipped. `time_base` converts pts where the frames carry
    none of their own (a bare CodecContext)."""
    try:
        frames = decode()
    except av.error.FFmpegError as exc:  # decoder errors are per packet: skip it
        on_corrupt(f"decode: {ffmpeg_message(exc)}")
        return
    for frame in frames:
        try:
            image = frame.to_ndarray(format="rgb24")
        except (av.error.FFmpegError, ValueError) as exc:
            on_corrupt(f"convert: {ffmpeg_message(exc)}")
            continue
        if time_base is None:
            pts = frame.time
        else:
            pts = None if frame.pts is None else float(frame.pts * time_base)
        yield DecodedPicture(image, pts)


def decode_pictures(video: VideoInput, on_corrupt: Callable[[str], None]) -> Iterator[DecodedPicture]:
    """Decode every picture of the video stream in presentation order.

    Undecodable packets (and unreadable chunks, up to MAX_CONSECUTIVE_DEMUX_ERRORS in a row) are
    reported through `on_corrupt` and skipped. Other read errors (timeouts, lost connections)
    propagate. Ends at end of input, after flushing the decoder.
    """
    for packet in demux_packets(video, on_corrupt):
        yield from decode_packet(packet, on_corrupt)
