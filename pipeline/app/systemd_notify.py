"""The sd_notify(3) protocol, implemented here: newline-separated `KEY=VALUE` lines in one
datagram to the unix socket named by $NOTIFY_SOCKET (a path, or '@name' for a Linux abstract
address). Not run by systemd (no NOTIFY_SOCKET): every call is a no-op.

WATCHDOG_USEC (and WATCHDOG_PID, when set, must be our pid) says how often systemd expects
WATCHDOG=1; `watchdog_s` carries it so the supervisor can decide when to ping.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping

log = logging.getLogger(__name__)


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: what systemd's RELOADING=1 wants as MONOTONIC_USEC."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """The watchdog timeout systemd set for this process, or None when there is none."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. a parent shell)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


class SystemdNotifier:
    def __init__(self, address: str | None, watchdog_s: float | None = None) -> None:
        self.address = address or None
        self.watchdog_s = watchdog_s
        self._socket: socket.socket | None = None
        self._warned = False
        if self.address:
            # '@' marks an abstract address: its first byte is NUL on the wire
            self._target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> "SystemdNotifier":
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET"), watchdog_seconds(env))

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram; False when not under systemd or on error."""
        if self._socket is None:
            return False
        try:
            self._socket.sendto("\n".join(assignments).encode("utf-8"), self._target)
        except OSError as exc:
            if not self._warned:  # systemd gone or socket wrong: say it once, never fail the daemon
                log.warning("sd_notify to %s failed: %s", self.address, exc.strerror or exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status_line(status))

    def reloading(self) -> bool:
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(*_status_line(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _status_line(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return ("STATUS=" + " ".join(text.split()),)  # a newline would start a new assignment
