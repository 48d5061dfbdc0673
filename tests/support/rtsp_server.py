"""Start, crash, stall and restart a real RTSP server process (GStreamer, see gst_rtsp_server.py)."""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

GST_PYTHON = "/usr/bin/python3"  # Debian's python has python3-gi; the project's python does not
SERVER_SCRIPT = Path(__file__).with_name("gst_rtsp_server.py")
START_TIMEOUT_S = 15.0


def rtsp_server_unavailable() -> str | None:
    """Why a GStreamer RTSP server cannot run here, or None if it can."""
    if not os.access(GST_PYTHON, os.X_OK):
        return f"{GST_PYTHON} not found"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
             "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
             "missing = [e for e in ('videotestsrc', 'x264enc', 'rtph264pay') "
             "if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))")
    try:
        out = subprocess.run([GST_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {GST_PYTHON}: {exc}"
    if out.returncode != 0:
        return f"GStreamer RTSP server not importable: {out.stderr.strip().splitlines()[-1:]}"
    if out.stdout.strip():
        return f"GStreamer elements missing: {out.stdout.strip()}"
    return None


def require_rtsp_server() -> None:
    """Fail (not skip) the calling test when the RTSP server cannot run: it is part of the setup."""
    import pytest

    why = rtsp_server_unavailable()
    if why:
        pytest.fail(f"the RTSP server is part of the test setup (scripts/test.sh installs it): {why}")


class RtspServer:
    """One RTSP server process serving a live 'ball' test pattern (H.264) on 127.0.0.1.

    The first start picks a free port; later starts reuse it, so clients can reconnect to the
    same URL after `kill()` + `start()`. `pause()`/`resume()` freeze the process (SIGSTOP/
    SIGCONT): the TCP connection stays up but no packets flow, i.e. a stalled camera.

    `credentials` only go into `url`; the server checks nothing unless `required_credentials`
    is given (RTSP basic auth: other credentials get 401 Unauthorized).
    """

    def __init__(self, mount: str = "/stream", width: int = 320, height: int = 240, fps: int = 25,
                 shared: bool = False, port: int = 0, credentials: tuple[str, str] | None = None,
                 required_credentials: tuple[str, str] | None = None) -> None:
        self.mount = mount if mount.startswith("/") else "/" + mount
        self.width, self.height, self.fps = width, height, fps
        self.shared = shared
        self.port = port
        self.credentials = credentials
        self.required_credentials = required_credentials
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("RTSP server has no port yet: start() it first")
        auth = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "RtspServer":
        if self.running:
            raise RuntimeError("RTSP server is already running")
        deadline = time.monotonic() + timeout_s
        while True:
            error = self._try_start(deadline)
            if error is None:
                return self
            # The port can stay busy for a moment after a kill; keep trying until the deadline.
            if time.monotonic() >= deadline:
                raise RuntimeError(f"RTSP server did not start: {error}")
            time.sleep(0.2)

    def _try_start(self, deadline: float) -> str | None:
        cmd = [GST_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--mount", self.mount,
               "--width", str(self.width), "--height", str(self.height), "--fps", str(self.fps)]
        if self.shared:
            cmd.append("--shared")
        if self.required_credentials:
            cmd += ["--user", self.required_credentials[0], "--password", self.required_credentials[1]]
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert process.stdout is not None
        line = ""
        while time.monotonic() < deadline and process.poll() is None:
            ready, _, _ = select.select([process.stdout], [], [], 0.1)
            if ready:
                line = process.stdout.readline().strip()
                break
        if not line.startswith("READY "):
            _reap(process, signal.SIGKILL)
            return line or f"no READY line (exit code {process.poll()})"
        self.port = int(line.split()[1])
        self._process = process
        if not _accepts_connections(self.port, deadline):
            self.kill()
            return f"port {self.port} does not accept connections"
        return None

    def kill(self) -> None:
        """Crash the server (SIGKILL): clients see their connection drop at once."""
        self._end(signal.SIGKILL)

    def terminate(self) -> None:
        self._end(signal.SIGTERM)

    def pause(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is not None:
            _reap(process, sig)


def _reap(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        process.send_signal(signal.SIGCONT)  # a paused process must run to act on SIGTERM
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


def _accepts_connections(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
