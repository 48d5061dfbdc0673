"""Network failures that FFmpeg words misleadingly (issue 23 item 11), against real local servers:
a server that closes at once ("Invalid data found"), an HTTP redirect loop ("Input/output error")."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pipeline.config import CameraConfig
from pipeline.frame import CameraState
from tests.support.source_runner import SourceRunner


class ClosingServer:
    """Accepts TCP connections and closes each at once, without a byte."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self._listener.close()


def reconnect_reason(url: str) -> str:
    runner = SourceRunner(CameraConfig(id="cam", url=url, timeout_s=3)).start()
    try:
        return runner.wait_for_state(CameraState.RECONNECTING, timeout_s=15).reason
    finally:
        runner.stop.set()
        runner.join(5)


def test_a_server_that_closes_at_once_is_named_so() -> None:
    server = ClosingServer()
    try:
        for scheme in ("rtsp", "http"):
            reason = reconnect_reason(f"{scheme}://127.0.0.1:{server.port}/stream")
            assert reason.startswith("cannot connect: the server closed the connection without answering"), reason
    finally:
        server.close()


def test_an_http_redirect_loop_is_named_so() -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "/b.mjpg" if self.path.startswith("/a") else "/a.mjpg")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        reason = reconnect_reason(f"http://127.0.0.1:{http.server_address[1]}/a.mjpg")
    finally:
        http.shutdown()
        http.server_close()
    assert reason.startswith("cannot connect: redirect loop: /a.mjpg -> /b.mjpg -> /a.mjpg"), reason
