"""The network checks behind clear open-failure reasons, against real sockets."""
from __future__ import annotations

import socket
import threading

import pytest

from pipeline.sources.reachability import (Endpoint, PortState, endpoint_of, foreign_answer, port_state,
                                           resolve_failure)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OneShotServer:
    """Listens on 127.0.0.1 and answers every connection with `reply` (None: stays silent)."""

    def __init__(self, reply: bytes | None) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.reply = reply
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.reply is not None:
                conn.recv(1024)  # the request
                conn.sendall(self.reply)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("url, expected", [
    ("rtsp://user:p@ss:word@cam.local:8554/live?x=1", Endpoint("rtsp", "cam.local", 8554, "/live")),
    ("rtsp://10.0.0.7/stream1", Endpoint("rtsp", "10.0.0.7", 554, "/stream1")),
    ("HTTP://[::1]/a.ts", Endpoint("http", "::1", 80, "/a.ts")),
    ("rtmp://h", Endpoint("rtmp", "h", 1935, "/")),
    ("rtsps://h/x", None),  # TLS: nothing to check with plain TCP
    ("rtsp://h:notaport/x", None),
    ("rtsp:///x", None),
    ("/videos/a.mp4", None),
])
def test_endpoint_of(url: str, expected: Endpoint | None) -> None:
    assert endpoint_of(url) == expected


def test_resolve_failure_names_the_resolver_error() -> None:
    assert resolve_failure("localhost") is None
    assert resolve_failure("127.0.0.1") is None
    reason = resolve_failure("camera.invalid")  # .invalid never resolves (RFC 2606)
    assert reason and "\n" not in reason


def test_port_state_tells_refused_from_open() -> None:
    server = OneShotServer(None)
    try:
        assert port_state(Endpoint("rtsp", "127.0.0.1", server.port, "/"), 0.5) is PortState.OPEN
    finally:
        server.close()
    assert port_state(Endpoint("rtsp", "127.0.0.1", closed_port(), "/"), 0.5) is PortState.REFUSED


@pytest.mark.parametrize("reply, expected", [
    (b"\x8f\x00garbage-bytes", "the server's answer is not RTSP (starts with b'\\x8f\\x00garbag')"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "the server's answer is not RTSP (starts with b'HTTP/1.1')"),
    (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n", None),  # a real RTSP answer: nothing to add
    (None, None),  # silence: the caller's "no answer" stands
])
def test_foreign_answer(reply: bytes | None, expected: str | None) -> None:
    server = OneShotServer(reply)
    try:
        assert foreign_answer(Endpoint("rtsp", "127.0.0.1", server.port, "/x"), 0.5) == expected
    finally:
        server.close()


def test_foreign_answer_for_http_and_a_closed_port() -> None:
    server = OneShotServer(b"SSH-2.0-OpenSSH_9.2\r\n")
    try:
        assert foreign_answer(Endpoint("http", "127.0.0.1", server.port, "/a.ts"), 0.5) == \
            "the server's answer is not HTTP (starts with b'SSH-2.0-')"
    finally:
        server.close()
    assert foreign_answer(Endpoint("rtsp", "127.0.0.1", closed_port(), "/"), 0.5) is None
