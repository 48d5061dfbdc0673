"""Cheap network checks that turn FFmpeg's vague open failures into clear reasons, and let a
camera that was refused come back as soon as its server listens again.

FFmpeg reports an unresolvable host as "Input/output error" and a server that answers with
garbage the same way as a silent one (its open simply times out). These checks run only after
an open has already failed, in the camera's reader thread, each bounded by a short timeout.
"""
from __future__ import annotations

import enum
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"rtsp": 554, "http": 80, "rtmp": 1935}
# A request each plain-text protocol must answer with a status line starting with the prefix.
_GREETINGS = {
    "rtsp": (b"OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n", b"RTSP/"),
    "http": (b"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n", b"HTTP/"),
}


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path: str


def endpoint_of(url: str) -> Endpoint | None:
    """Scheme, host, port of a network URL; None when it has no plain TCP endpoint we know."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # e.g. a port that is not a number
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in DEFAULT_PORTS:
        return None
    return Endpoint(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], parts.path or "/")


def resolve_failure(host: str) -> str | None:
    """Why `host` does not resolve (the resolver's words), or None if it does."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return exc.strerror or str(exc)
    except (OSError, UnicodeError) as exc:  # e.g. a label too long for IDNA
        return str(exc)
    return None


class PortState(str, enum.Enum):
    OPEN = "open"  # a TCP connection succeeded
    REFUSED = "refused"  # the host is there but nothing listens (a server process that is down)
    UNKNOWN = "unknown"  # timeout, unreachable, unresolvable: nothing to learn cheaply


def port_state(endpoint: Endpoint, timeout_s: float) -> PortState:
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s):
            return PortState.OPEN
    except ConnectionRefusedError:
        return PortState.REFUSED
    except OSError:
        return PortState.UNKNOWN


def foreign_answer(endpoint: Endpoint, timeout_s: float) -> str | None:
    """Ask the server the protocol's simplest question; if it answers with something that is not
    that protocol, say so (one line). None: no answer, a proper answer, or nothing to check."""
    greeting = _GREETINGS.get(endpoint.scheme)
    if greeting is None:
        return None
    request, expected = greeting
    url = f"{endpoint.scheme}://{endpoint.host}:{endpoint.port}{endpoint.path}"
    request = request.replace(b"{url}", url.encode("ascii", "replace"))
    request = request.replace(b"{path}", endpoint.path.encode("ascii", "replace"))
    request = request.replace(b"{host}", endpoint.host.encode("ascii", "replace"))
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s) as conn:
            conn.sendall(request)
            answer = conn.recv(64)
    except ConnectionResetError:
        return "the server closed the connection without answering (reset)"
    except OSError:  # refused, or silent until the timeout
        return None
    if not answer:  # FFmpeg calls this "Invalid data found when processing input"
        return "the server closed the connection without answering"
    if answer.startswith(expected) or expected.startswith(answer):
        return None
    return f"the server's answer is not {endpoint.scheme.upper()} (starts with {answer[:8]!r})"


MAX_REDIRECTS = 10


def redirect_loop(url: str, timeout_s: float) -> str | None:
    """For an http:// URL whose open failed: follow its redirects ourselves (FFmpeg reports a loop as
    "Input/output error"); a one-line description of a loop or a too-long chain, else None."""
    import http.client
    from urllib.parse import urljoin

    seen: list[str] = []
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(current)
        if parts.scheme.lower() != "http" or not parts.hostname:
            return None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            location = response.getheader("Location")
            status = response.status
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()
        if status not in (301, 302, 303, 307, 308) or not location:
            return None
        seen.append(path)
        current = urljoin(current, location)
        nxt = urlsplit(current)
        next_path = (nxt.path or "/") + (f"?{nxt.query}" if nxt.query else "")
        if nxt.netloc == parts.netloc and next_path in seen:
            return f"redirect loop: {' -> '.join(seen)} -> {next_path}"
    return f"more than {MAX_REDIRECTS} redirects"
