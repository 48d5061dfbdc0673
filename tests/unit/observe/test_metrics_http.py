"""The metrics HTTP servers' bounds on real sockets (issue 23 items 3 and 9; the daemon's and the relay's
and bridge's): at most
MAX_CONNECTIONS served at once (more are closed at accept), an idle client is dropped after
CLIENT_TIMEOUT_S, a client that resets is one log line and no traceback on stderr."""
from __future__ import annotations

import logging
import select
import socket
import struct
import time

import pytest

from pipeline.observe import http
from pipeline.observe.metrics import Metrics


def closed_within(peer: socket.socket, timeout_s: float) -> bool:
    peer.settimeout(timeout_s)
    try:
        return peer.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def get(port: int, path: str = "/healthz") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        return s.recv(64)


def daemon_server() -> http.HttpEndpoint:
    return http.MetricsServer("127.0.0.1:0", Metrics())


def side_process_server() -> http.HttpEndpoint:  # pipeline relay / bridge
    from prometheus_client import CollectorRegistry

    from pipeline.observe.service_http import ServiceHttpServer
    return ServiceHttpServer("127.0.0.1:0", CollectorRegistry(), lambda: (False, "no upstream"), "relay --metrics")


@pytest.mark.parametrize("make_server", [daemon_server, side_process_server])
def test_connections_are_capped_and_idle_ones_time_out(monkeypatch: pytest.MonkeyPatch, make_server) -> None:
    monkeypatch.setattr(http, "CLIENT_TIMEOUT_S", 1.5)
    server = make_server()
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(http.MAX_CONNECTIONS + 8)]
        time.sleep(0.3)
        readable, _, _ = select.select(idle, [], [], 0)  # EOF makes a socket readable
        assert len(readable) == 8  # the ones past the cap, closed at accept
        assert all(closed_within(peer, 3.0) for peer in idle)  # the others after the client timeout
        for peer in idle:
            peer.close()
        assert get(server.port).startswith(b"HTTP/1.0 503")  # answering again (unhealthy: 503)
    finally:
        server.close()


def test_a_reset_client_is_a_log_line_not_a_traceback(capfd: pytest.CaptureFixture[str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    server = http.MetricsServer("127.0.0.1:0", Metrics())
    try:
        with caplog.at_level(logging.DEBUG, logger="pipeline.observe.http"):
            for _ in range(20):
                with socket.create_connection(("127.0.0.1", server.port), timeout=5) as peer:
                    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    peer.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            time.sleep(0.5)
            assert get(server.port, "/metrics").startswith(b"HTTP/1.0 200")
    finally:
        server.close()
    assert "Traceback" not in capfd.readouterr().err
    assert all("\n" not in r.getMessage() for r in caplog.records)
