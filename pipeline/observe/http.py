"""HTTP endpoint for Prometheus (/metrics) and a health check (/healthz).

Hostile clients (docs/RELIABILITY.md, "Hostile network"): at most MAX_CONNECTIONS are served at
once (more are closed at accept, so idle connections cannot use up the process's fds or
threads), a connection that sends nothing for CLIENT_TIMEOUT_S is closed, accept failing with
EMFILE/ENFILE backs off instead of spinning, and a client that resets or misbehaves is one
rate-limited log line, never a traceback on stderr.
"""
from __future__ import annotations

import errno
import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pipeline.observe.metrics import Metrics

log = logging.getLogger(__name__)

HEALTHY_IF_PUBLISHED_WITHIN_S = 10.0
MAX_CONNECTIONS = 32  # scrapers and health checks: a handful at a time
CLIENT_TIMEOUT_S = 5.0  # per blocking read or write of one connection
ACCEPT_BACKOFF_S = 0.1  # out of fds: wait this long before accepting again
FD_EXHAUSTION = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused_connections = 0
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in FD_EXHAUSTION:  # the listener stays readable: without a pause we would spin
                log.warning("metrics: cannot accept a connection: %s", exc.strerror)
                time.sleep(ACCEPT_BACKOFF_S)
            raise

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self._slots.acquire(blocking=False):
            return True
        self.refused_connections += 1
        log.warning("metrics: %d connections open already: closing one from %s", MAX_CONNECTIONS,
                    client_address[0] if client_address else "?")
        return False  # socketserver closes it

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread could be started: the slot is ours to give back
            self._slots.release()
            self.shutdown_request(request)
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        peer = client_address[0] if client_address else "?"
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            log.debug("metrics: client %s: %s", peer, exc)
        else:
            log.warning("metrics: client %s: %s: %s", peer, type(exc).__name__, " ".join(str(exc).split()))


class HttpEndpoint:
    """An HTTP server on HOST:PORT served by a daemon thread: the daemon's MetricsServer and the
    side processes' service_http.ServiceHttpServer."""

    def __init__(self, bind: str, handler: type[BaseHTTPRequestHandler], what: str, thread_name: str,
                 server_cls: type[ThreadingHTTPServer] = BoundedHTTPServer) -> None:
        host, _, port = bind.rpartition(":")
        try:
            port_no = int(port)
        except ValueError:
            raise ValueError(f"{what}: {bind!r}: expected HOST:PORT") from None
        try:
            self._server = server_cls((host or "127.0.0.1", port_no), handler)
        except (OSError, OverflowError) as exc:  # OverflowError: a port out of range
            raise OSError(f"{what}: {bind}: {getattr(exc, 'strerror', None) or exc}") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=thread_name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class MetricsServer(HttpEndpoint):
    def __init__(self, bind: str, metrics: Metrics) -> None:
        super().__init__(bind, _handler_for(metrics), "metrics.bind", "metrics-http")


def _handler_for(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    def health() -> tuple[bool, bytes]:
        age = metrics.seconds_since_publish()
        ok = age <= HEALTHY_IF_PUBLISHED_WITHIN_S
        return ok, (f"ok: last frame published {age:.1f}s ago\n" if ok
                    else "unhealthy: no frame published recently\n").encode()

    # a client that stalls mid-request lets go of its slot
    return metrics_handler(metrics.registry, health, timeout=CLIENT_TIMEOUT_S)


def metrics_handler(registry: CollectorRegistry, health: Callable[[], tuple[bool, bytes]],
                    timeout: float | None = None) -> type[BaseHTTPRequestHandler]:
    """GET /metrics (the registry, Prometheus text) and /healthz (200 or 503 with health()'s body);
    anything else is 404. No access log."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/metrics":
                body, code, ctype = generate_latest(registry), 200, CONTENT_TYPE_LATEST
            elif self.path == "/healthz":
                ok, body = health()
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

    Handler.timeout = timeout  # per blocking read or write of a connection; None: no limit
    return Handler
