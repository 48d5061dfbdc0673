"""Helpers for the scale-out tests: daemons and side processes (`pipeline relay`, `pipeline bridge`)
as real subprocesses, and real brokers (mosquitto, redis-server from Debian) on free loopback ports."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.daemon_harness import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, process: "Process | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.cmd[0]} exited: {process.output()[-1000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Process:
    """A subprocess with stderr in a file (a chatty process must never block on a full pipe)."""

    def __init__(self, cmd: list[str], log: Path, cwd: Path = REPO) -> None:
        self.cmd, self.log_path = cmd, log
        self._log = open(log, "a")
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def close(self) -> None:
        self.kill()
        self._log.close()


def pipeline_process(args: list[str], log: Path) -> Process:
    return Process([sys.executable, "-m", "pipeline", *args], log)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def require_binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package; scripts/test.sh installs it)")
    return path


class _LocalServer:
    """A server binary run as a Process on a loopback port; kill() stops it (start() may follow)."""

    process: Process | None = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.close()
            self.process = None


class Mosquitto(_LocalServer):
    """A real mosquitto broker on a free loopback port; `extra` lines go into its config."""

    def __init__(self, workdir: Path, extra: str = "", port: int | None = None) -> None:
        self.binary = require_binary("mosquitto")
        self.workdir, self.extra = workdir, extra
        self.port = port or free_port()
        self.process: Process | None = None

    def start(self) -> "Mosquitto":
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        # as root mosquitto switches to user mosquitto, which cannot read pytest's private tmp dirs
        user = "user root\n" if os.geteuid() == 0 else ""
        anonymous = "" if "allow_anonymous" in self.extra else "allow_anonymous true\n"
        conf.write_text(f"{user}listener {self.port} 127.0.0.1\n{anonymous}{self.extra}\n")
        self.process = Process([self.binary, "-c", str(conf)], self.workdir / f"mosquitto-{self.port}.log")
        wait_for_port(self.port, process=self.process)
        return self


class RedisServer(_LocalServer):
    """A real redis-server on a free loopback port, no persistence; `args` are extra options."""

    def __init__(self, workdir: Path, args: tuple[str, ...] = (), port: int | None = None) -> None:
        self.binary = require_binary("redis-server")
        self.workdir, self.args = workdir, args
        self.port = port or free_port()
        self.process: Process | None = None

    def start(self) -> "RedisServer":
        self.process = Process([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(self.workdir), *self.args],
                               self.workdir / f"redis-{self.port}.log")
        wait_for_port(self.port, process=self.process)
        return self

