"""The preview's own HTTP server (not the metrics one: that is scraped by Prometheus, often from
another host and with metrics.bind: null on small setups, while this one needs a token off
loopback, a connection cap and socket timeouts; each can be bound and secured on its own).

Routes (GET only):
  /                                 the grid (static/index.html)
  /camera/<id>                      one camera at full size (static/camera.html)
  /static/<file>                    the page's JS and CSS, from the package (no CDN)
  /api/cameras?watch=a,b&full=c     every camera's state, counters, analytics (live tracks and zone/line
                                    counts, or null) and latest frame; marks a,b watched (tile_width)
                                    and c watched at max_width (its own page)
  /api/cameras/<id>/frames/<n>.jpg  an encoded frame (the last few per camera are kept)
  /api/snapshots                    the most recent snapshots; /snapshots/<name> one of them
Camera URLs never leave the daemon: the JSON is built from ids, states and counters only.
"""
from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from pipeline.config.camera import CAMERA_ID
from pipeline.observe.redaction import redact_url

if TYPE_CHECKING:
    from pipeline.analytics.stage import CameraAnalytics
    from pipeline.preview.service import PreviewService

log = logging.getLogger("pipeline.preview.http")

STATIC = {"index.html": "text/html; charset=utf-8", "camera.html": "text/html; charset=utf-8",
          "preview.js": "text/javascript; charset=utf-8", "preview.css": "text/css; charset=utf-8"}
COOKIE = "preview_token"
ANY_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
SNAPSHOTS_LISTED = 48


def _static(name: str) -> bytes:
    return resources.files("pipeline.preview").joinpath("static", name).read_bytes()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: a grid page opening at once, or 50 phones, must not wait on SYN retries

    def __init__(self, address: tuple[str, int], handler: type, preview: "PreviewService", family: int) -> None:
        self.address_family = family
        self.preview = preview
        self.slots = threading.BoundedSemaphore(preview.config.max_clients)
        self.logged: set[str] = set()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):  # over max_clients: answer at once, no thread
            self.count("busy", "preview: more than %d connections at once; the rest get 503",
                       self.preview.config.max_clients)
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        from pipeline.preview.service import ThreadCpu

        cpu = ThreadCpu(self.preview.cpu_seconds.labels("http"))
        try:
            super().process_request_thread(request, client_address)
        finally:
            cpu.add()
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the handler counts what it can name; the rest are broken connections

    def count(self, reason: str, fmt: str, *args: object) -> None:
        self.preview.http_rejected.labels(reason).inc()
        if reason not in self.logged:
            self.logged.add(reason)
            log.warning(fmt + " (logged once; counted in pipeline_preview_http_rejected_total)", *args)


class PreviewServer:
    def __init__(self, preview: "PreviewService") -> None:
        cfg = preview.config
        family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
        try:
            self._server = _Server((cfg.host, cfg.port), _Handler, preview, family)
        except OSError as exc:
            raise OSError(f"preview.bind: {cfg.bind}: {exc.strerror}") from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="preview-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "pipeline-preview"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.preview.config.client_timeout_s  # a client that stalls holds a thread this long
        super().setup()

    def log_error(self, format: str, *args: object) -> None:  # noqa: A002
        # BaseHTTPRequestHandler reports a read or write that timed out here, then drops the connection
        if format.startswith("Request timed out"):
            self.server.count("timeout", "preview: a client sent or read nothing for %.1fs; its connection "
                              "was closed", self.timeout)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code in (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, HTTPStatus.REQUEST_URI_TOO_LONG):
            self.server.count("too_large", "preview: a request with a line or header over 64 KiB was refused (%d)",
                              code)
        elif code == HTTPStatus.BAD_REQUEST:
            self.server.count("bad_request", "preview: a malformed request was refused (%s)", message)
        self.close_connection = True
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # a page polling twice a second would flood the journal

    # ---------------------------------------------------------------- routing

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        secret = self.server.preview.config.token
        if secret is not None and not self._authorized(secret.get_secret_value(), query):
            return
        path = url.path
        parts = [p for p in path.split("/") if p]
        if path == "/":
            self._send(200, STATIC["index.html"], _static("index.html"))
        elif len(parts) == 2 and parts[0] == "camera" and CAMERA_ID.fullmatch(parts[1]):
            self._send(200, STATIC["camera.html"], _static("camera.html"))
        elif len(parts) == 2 and parts[0] == "static" and parts[1] in STATIC:
            self._send(200, STATIC[parts[1]], _static(parts[1]), cache="max-age=300")
        elif path == "/api/cameras":
            watch = [c for v in query.get("watch", []) for c in v.split(",") if CAMERA_ID.fullmatch(c)]
            full = [c for v in query.get("full", []) for c in v.split(",") if CAMERA_ID.fullmatch(c)]
            self._json(self._cameras(watch, full))
        elif len(parts) == 5 and parts[:2] == ["api", "cameras"] and parts[3] == "frames" and parts[4].endswith(".jpg"):
            self._frame(parts[2], parts[4][:-4])
        elif path == "/api/snapshots":
            self._json({"snapshots": self._snapshots()})
        elif len(parts) == 2 and parts[0] == "snapshots":
            self._snapshot(parts[1])
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _authorized(self, token: str, query: dict[str, list[str]]) -> bool:
        given = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:].strip()
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and given is None:
                given = value
        from_query = query.get("token", [None])[0]
        ok = any(g is not None and hmac.compare_digest(g.encode(), token.encode()) for g in (given, from_query))
        if not ok:
            self.server.count("unauthorized", "preview: a request without the right token was refused (401)")
            self._send(401, "text/plain; charset=utf-8", b"token required: open the page as /?token=...\n")
            return False
        if from_query is not None:  # once: trade the token in the URL for a cookie, and drop it from the URL
            self.send_response(303)
            self.send_header("Location", urlsplit(self.path).path)
            self.send_header("Set-Cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        return True

    # ---------------------------------------------------------------- answers

    def _cameras(self, watch: list[str], full: list[str]) -> dict:
        preview = self.server.preview
        configs = {c.id: c for c in preview.camera_configs()}
        if watch or full:
            preview.tap.watch([c for c in watch if c in configs], [c for c in full if c in configs])
        board = {s.camera_id: s for s in preview.board.snapshot()}
        now = time.monotonic()
        cameras = []
        for cid in configs:
            status = board.get(cid)
            rate = preview.tap.rates.get(cid)
            latest = preview.store.latest(cid)
            cameras.append({
                "id": cid,
                "state": status.state.value if status else "starting",
                "reason": page_reason(status.reason, configs[cid].url) if status else "",
                "fps": round(rate.fps(now), 2) if rate else 0.0,
                "latency_ms": round(rate.latency_s * 1000, 1) if rate and rate.latency_s is not None else None,
                "decoded": status.decoded if status else 0,
                "published": status.published if status else 0,
                "dropped": status.dropped if status else 0,
                "analytics": _analytics_json(preview.camera_analytics(cid)),
                "frame": None if latest is None else {
                    "index": latest.index, "seq": latest.seq, "captured_at": latest.captured_at,
                    "width": latest.width, "height": latest.height,
                    "url": f"/api/cameras/{cid}/frames/{latest.index}.jpg",
                    "detections": list(latest.detections)},
            })
        return {"fps": preview.config.fps, "cameras": cameras, "snapshots": bool(preview.writer),
                "preview_cpu_s": round(preview.cpu_total_s(), 4)}

    def _frame(self, camera_id: str, index: str) -> None:
        frame = self.server.preview.store.get(camera_id, int(index)) if index.isdigit() else None
        if frame is None:
            self._send(404, "text/plain; charset=utf-8", b"no such frame (the last few are kept)\n")
            return
        self.server.preview.tap.watch([camera_id])
        self._send(200, "image/jpeg", frame.jpeg, cache="private, max-age=60")

    def _snapshots(self) -> list[dict]:
        writer = self.server.preview.writer
        if writer is None:
            return []
        return [{"name": s.name, "camera": s.camera, "reason": s.reason, "at": s.at, "size": s.size,
                 "url": f"/snapshots/{s.name}"} for s in writer.recent(SNAPSHOTS_LISTED)]

    def _snapshot(self, name: str) -> None:
        writer = self.server.preview.writer
        path = writer.path_of(name) if writer else None
        try:
            body = path.read_bytes() if path else None
        except OSError:
            body = None
        if body is None:
            self._send(404, "text/plain; charset=utf-8", b"no such snapshot\n")
            return
        self._send(200, "image/jpeg", body, cache="private, max-age=3600")

    def _json(self, doc: dict) -> None:
        self._send(200, "application/json", json.dumps(doc, separators=(",", ":")).encode())

    def _send(self, code: int, ctype: str, body: bytes, cache: str = "no-store") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'")
        self.end_headers()
        self.wfile.write(body)


def page_reason(reason: str, url: str) -> str:
    """A status reason without the camera's URL or file path (sources name them when opening)."""
    for hidden in sorted({url, redact_url(url)}, key=len, reverse=True):
        if hidden:
            reason = reason.replace(hidden, "<camera url>")
    return ANY_URL.sub("<url>", reason)


def _analytics_json(snap: CameraAnalytics | None) -> dict[str, Any] | None:
    """null when tracking is off or the camera has had no frame yet."""
    return None if snap is None else dataclasses.asdict(snap)  # {tracks, counts: [{rule, label, what, count}]}
