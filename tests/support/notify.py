"""A NOTIFY_SOCKET listener like systemd's: an abstract unix datagram socket that records every
sd_notify datagram with its arrival time (tests/integration/operations/test_operations_notify.py,
scripts/watchdog_bench.py)."""
from __future__ import annotations

import os
import socket
import threading
import time


class NotifyListener:
    """Binds NOTIFY_SOCKET like systemd and records (arrival time, {key: value}) per datagram.
    A datagram with a line that is not KEY=VALUE keeps its other lines and is also kept whole in
    `malformed`, for a test to check."""

    def __init__(self, prefix: str) -> None:
        self.address = f"@{prefix}-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.malformed: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            lines = data.split("\n")
            if any("=" not in ln for ln in lines):
                self.malformed.append(data)
            self.messages.append((time.monotonic(), dict(ln.split("=", 1) for ln in lines if "=" in ln)))

    def times(self, key: str) -> list[float]:
        """Arrival times of the datagrams that carry `key`."""
        return [t for t, m in list(self.messages) if key in m]

    def keys(self) -> list[str]:
        """One entry per datagram: its keys joined, e.g. 'READY+STATUS'."""
        return ["+".join(m) for _, m in list(self.messages)]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()
