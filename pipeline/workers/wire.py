"""The daemon's reading end of a decode worker's pipe: every message that has arrived, for one read.

`Connection.recv()` reads one message with two reads (its 4-byte length, then its body), and each read
lets go of the interpreter lock and waits to get it back. At 135 cameras on the H200 the four
receiving threads held the lock in 35-43 % of py-spy's samples of it (docs/BENCHMARKS.md, issue 22
session 7): unpickling 13-16 points, the reads 7-11. `MessageReader.read()` takes whatever the pipe
holds in one read (BUFFER_BYTES) and unpickles each complete message in it: a daemon that is busy, and
so late to read, pays one wake-up for all the messages that queued meanwhile.

The framing is Connection's own (the worker still sends with `Connection.send`): a big-endian signed
32-bit length, or -1 followed by an unsigned 64-bit length for messages over 2 GiB, then the pickle.
"""
from __future__ import annotations

import logging
import os
import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

BUFFER_BYTES = 1 << 18  # one read takes up to this much (more when a message needs it: CPU frames)
_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


class MessageReader:
    """Reads a Connection's messages in bulk. One thread reads; others may still send on it."""

    def __init__(self, conn: Connection) -> None:
        self._fd = conn.fileno()
        self._buf = bytearray()
        self._need = _SHORT.size  # bytes the buffer must hold before the next message can be parsed

    def read(self) -> list[Any]:
        """Every message complete after one read (blocks until there is at least one). EOFError at
        the end of the stream, like Connection.recv()."""
        messages: list[Any] = []
        while not messages:
            chunk = os.read(self._fd, max(BUFFER_BYTES, self._need - len(self._buf)))
            if not chunk:
                raise EOFError("decode worker pipe closed")
            self._buf += chunk
            messages = self._parse()
        return messages

    def _parse(self) -> list[Any]:
        out: list[Any] = []
        start, need = 0, _SHORT.size
        with memoryview(self._buf) as view:
            end = len(view)
            while end - start >= _SHORT.size:
                size, head = _SHORT.unpack_from(view, start)[0], _SHORT.size
                if size == -1:
                    if end - start < head + _LONG.size:
                        need = head + _LONG.size
                        break
                    size, head = _LONG.unpack_from(view, start + head)[0], head + _LONG.size
                if end - start < head + size:
                    need = head + size
                    break
                with view[start + head:start + head + size] as body:
                    try:
                        out.append(pickle.loads(body))
                    except Exception:  # noqa: BLE001 - one unreadable message; the ones after it still count
                        log.exception("decode worker message of %d bytes could not be read; skipped", size)
                start += head + size
        del self._buf[:start]  # every view is released: the buffer may shrink
        self._need = need
        return out
