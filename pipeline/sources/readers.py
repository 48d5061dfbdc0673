"""Reader threads that may be inside FFmpeg when the process wants to exit.

A network camera reads on its own thread (network.py), which stop cannot interrupt: after stop it
leaves FFmpeg by itself within the camera's `timeout_s`, when PyAV's interrupt callback fires. If
the interpreter is finalizing at that moment, the callback re-enters it and the process dies of
SIGSEGV after an otherwise clean shutdown (CI, stop 31: exit -11 after the summary lines;
scripts/exit_crash_repro.py: 12 of 150 exits at the timeout's edge, 0 of 150 with this). So the command
line leaves with os._exit when such a reader is still alive, as the decode workers always do
(workers/child.py). This module imports nothing heavy: the command line loads it for every command.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable

EXIT_WAIT_S = 0.3  # a reader that is about to leave gets this long before the process leaves without it


class FfmpegReader(threading.Thread):
    """A daemon thread that connects and decodes through FFmpeg for one camera."""

    def __init__(self, camera_id: str, target: Callable[..., None], args: tuple[object, ...]) -> None:
        super().__init__(target=target, args=args, name=f"source-reader-{camera_id}", daemon=True)
        self.camera_id = camera_id


def readers_alive(wait_s: float = 0.0) -> list[str]:
    """Camera ids of the readers still running after waiting up to `wait_s` s for them together."""
    deadline = time.monotonic() + wait_s
    readers = [t for t in threading.enumerate() if isinstance(t, FfmpegReader)]
    for reader in readers:
        reader.join(max(0.0, deadline - time.monotonic()))
    return [r.camera_id for r in readers if r.is_alive()]


def exit_now_if_readers_blocked(code: int, wait_s: float = EXIT_WAIT_S,
                                leave: Callable[[int], object] = os._exit) -> None:
    """Return if no reader is inside FFmpeg any more (the normal exit follows); otherwise flush the
    logs and standard streams and leave with `code` without finalizing the interpreter. Everything
    the process owes the outside (published messages, the summary) was sent before this."""
    blocked = readers_alive(wait_s)
    if not blocked:
        return
    logging.getLogger(__name__).debug("leaving while %d camera reader(s) are inside FFmpeg: %s", len(blocked),
                                      ", ".join(blocked))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    leave(code)
