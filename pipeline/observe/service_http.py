"""/metrics and /healthz for the side processes (`pipeline relay`, `pipeline bridge`): their own
Prometheus registry and a health function, instead of the daemon's Metrics."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Health = Callable[[], tuple[bool, str]]  # (healthy, one line per part saying why)


class ServiceHttpServer:
    def __init__(self, bind: str, registry: CollectorRegistry, health: Health, what: str) -> None:
        host, _, port = bind.rpartition(":")
        try:
            port_no = int(port)
        except ValueError:
            raise ValueError(f"{what}: {bind!r}: expected HOST:PORT") from None
        handler = _handler_for(registry, health)
        try:
            self._server = ThreadingHTTPServer((host or "127.0.0.1", port_no), handler)
        except OSError as exc:
            raise OSError(f"{what}: {bind}: {exc.strerror}") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="service-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/metrics":
                body, code, ctype = generate_latest(registry), 200, CONTENT_TYPE_LATEST
            elif self.path == "/healthz":
                ok, text = health()
                body = f"{'ok' if ok else 'unhealthy'}\n{text}\n".encode()
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
