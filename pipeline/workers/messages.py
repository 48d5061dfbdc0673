"""What a decode worker process and the daemon say over their pipe (multiprocessing.Connection).

Each side sends lists of these frozen messages: a list carries whatever queued up since the last
send, so a busy worker costs the daemon one wake-up per several frames, not one per frame.

Frame pixels travel two ways:
  * device (NVDEC) pictures stay in the worker's GPU memory; the message carries a DeviceRef, and
    the daemon maps the buffer once by its CUDA IPC handle (sent with the buffer's first frame).
  * host (CPU-decoded) pictures travel inside the message, pickled.
Either way the daemon answers ReleaseFrames(tokens) once it is done with a frame, so the worker
can reuse the buffer and, for cameras read with back-pressure (files), send the next frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config import CameraConfig
from pipeline.frame import Frame, StatusEvent

# ----------------------------------------------------------------------------- worker -> daemon


@dataclass(frozen=True)
class DeviceRef:
    """An RGB or NV12 picture in one of the worker's CUDA allocations."""

    buffer_id: int  # CU_POINTER_ATTRIBUTE_BUFFER_ID in the worker: never reused while it lives
    handle: bytes | None  # the allocation's CUDA IPC handle, with the buffer's first frame only
    offset: int  # bytes from the start of the allocation
    shape: tuple[int, int, int]  # height, width, 3
    # NV12 surfaces (decode.nvdec_output: nv12): (row pitch, colour matrix, full range); None for RGB
    nv12: tuple[int, str, bool] | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return DeviceRef, (self.buffer_id, self.handle, self.offset, self.shape, self.nv12)


@dataclass(frozen=True)
class FrameMessage:
    run: int  # the StartCamera.run this frame belongs to
    frame: Frame  # its image: the pixels (np.ndarray) or where they are (DeviceRef)
    token: int | None  # answer ReleaseFrames with it; None when the worker needs no answer

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled flat, one tuple of plain values, where a dataclass pickles as its class and a dict of
        # its fields: about half the bytes (158 against 329 for a 1080p NV12 frame) and cheaper to unpickle
        # in the daemon's receiving thread, thousands of times a second (scripts/receive_cost.py).
        f = self.frame
        return _frame_message, (self.run, self.token, f.camera_id, f.index, f.pts, f.captured_at, f.width, f.height, f.image)


def _frame_message(run: int, token: int | None, camera_id: str, index: int, pts: float | None, captured_at: float,
                   width: int, height: int, image: Any) -> FrameMessage:
    return FrameMessage(run, Frame(camera_id, index, pts, captured_at, width, height, image), token)


@dataclass(frozen=True)
class StatusMessage:
    run: int
    event: StatusEvent


@dataclass(frozen=True)
class LogMessage:
    """A worker's log record, re-logged by the daemon (its handler formats and rate-limits it: the
    template and arguments travel apart so repeated messages are still recognised as repeats)."""

    level: int
    logger: str
    template: str
    args: tuple[object, ...]  # numbers and strings as they were; anything else as str()
    traceback: str | None


@dataclass(frozen=True)
class CounterTotals:
    """The worker's source counters so far: (Metrics attribute, label values, total)."""

    totals: tuple[tuple[str, tuple[str, ...], float], ...]


@dataclass(frozen=True)
class BuffersFreed:
    """These buffers will not carry frames again (their camera ended): the daemon may unmap them
    once its last frame in them is gone."""

    buffer_ids: tuple[int, ...]


# ----------------------------------------------------------------------------- daemon -> worker


@dataclass(frozen=True)
class StartCamera:
    run: int  # the daemon's number for this start of the camera: a restarted camera's late frames
    #           and statuses from before are told apart by it
    camera: CameraConfig
    # Frames it may have unreleased at the daemon; None: no limit. When they are out, a camera read as
    # fast as possible waits (back-pressure), and a live one (camera.is_live) drops its newest frame,
    # counted with reason "backlog", so a daemon that falls behind never piles frames up in the pipe.
    credits: int | None


@dataclass(frozen=True)
class StopCamera:
    run: int


@dataclass(frozen=True)
class ReleaseFrames:
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class Shutdown:
    """Stop every camera and exit."""
