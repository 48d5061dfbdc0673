"""HTTP endpoint for Prometheus (/metrics) and a health check (/healthz)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.observe.metrics import Metrics

HEALTHY_IF_PUBLISHED_WITHIN_S = 10.0


class MetricsServer:
    def __init__(self, bind: str, metrics: Metrics) -> None:
        host, _, port = bind.rpartition(":")
        try:
            port_no = int(port)
        except ValueError:
            raise ValueError(f"metrics.bind: {bind!r}: expected HOST:PORT") from None
        handler = _handler_for(metrics)
        try:
            self._server = ThreadingHTTPServer((host or "127.0.0.1", port_no), handler)
        except OSError as exc:
            raise OSError(f"metrics.bind: {bind}: {exc.strerror}") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/metrics":
                body, code, ctype = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
            elif self.path == "/healthz":
                age = metrics.seconds_since_publish()
                ok = age <= HEALTHY_IF_PUBLISHED_WITHIN_S
                body = (f"ok: last frame published {age:.1f}s ago\n" if ok
                        else "unhealthy: no frame published recently\n").encode()
                code, ctype = (200 if ok else 503), "text/plain; charset=utf-8"
            else:
                body, code, ctype = b"not found\n", 404, "text/plain; charset=utf-8"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # scrapes every few seconds would flood the journal

    return Handler
