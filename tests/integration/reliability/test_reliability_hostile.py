"""Hostile peers against the real daemon process (issue 23; docs/RELIABILITY.md, "Hostile network").

Each test attacks one listening socket with a scripted peer over a real socket while a healthy
subscriber reads; it asserts the bound (RSS growth, connections still served) and that the healthy
subscriber's seq has no gap. Each runs in seconds.
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import time
from pathlib import Path

import pytest
import zmq

from tests.support.daemon_harness import DaemonProcess, free_tcp_endpoint, write_config
from tests.support.reliability import detections, missing_seqs, rss_bytes, tiny_model_section

RSS_GROWTH_LIMIT = 100 * 2**20  # the bound for the flood and oversized-frame attacks
SIGTERM_LIMIT_S = 5.0


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return tiny_model_section(tmp_path_factory.mktemp("model"))


def start_daemon(tmp_path: Path, tiny_model: dict, **sections: dict) -> tuple[DaemonProcess, str]:
    bind = free_tcp_endpoint()
    cfg = write_config(tmp_path / "cfg.yaml", [{"id": "cam", "url": "synthetic:64x48@25"}], tiny_model,
                       publish={"bind": bind}, **sections)
    d = DaemonProcess(cfg)
    assert d.pump_until(lambda msgs: len(detections_of(msgs)) >= 5, timeout=60), d.stderr_path.read_text()
    return d, bind


def detections_of(messages: list[tuple[str, dict]]) -> list[dict]:
    return detections(messages, "cam")


def stop_within_limit(d: DaemonProcess) -> float:
    started = time.monotonic()
    d.terminate()
    run = d.finish(timeout=15)
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-2000:]
    assert took < SIGTERM_LIMIT_S, f"SIGTERM took {took:.1f}s"
    return took


def test_subscription_flood_is_bounded(tmp_path: Path, tiny_model: dict) -> None:
    """20,000 unique subscriptions (1 KB ones, then topic-sized ones) from one peer: RSS stays within
    100 MB, the healthy subscriber misses nothing, SIGTERM is quick."""
    d, bind = start_daemon(tmp_path, tiny_model)
    with d:
        rss_before = rss_bytes(d.proc.pid)
        context = zmq.Context()
        try:
            for size in (1024, 60):  # 1 KB: over MAXMSGSIZE; 60 bytes: admitted up to the topic limit
                for _round in range(2):
                    flood = context.socket(zmq.SUB)
                    flood.setsockopt(zmq.LINGER, 0)
                    flood.setsockopt(zmq.SNDHWM, 0)  # a SUB's own HWM would drop most of them before the wire
                    flood.connect(bind)
                    for i in range(20000):
                        flood.setsockopt(zmq.SUBSCRIBE, f"det/{i:08d}/".encode().ljust(size, b"x"))
                    d.pump(1.5)
                    flood.close()
            d.pump(2.0)
            grown = rss_bytes(d.proc.pid) - rss_before
        finally:
            context.term()
        dets = detections_of(d.messages)
        assert grown < RSS_GROWTH_LIMIT, f"RSS grew {grown / 2**20:.0f} MB"
        assert missing_seqs(dets) == 0
        assert dets[-1]["published_at"] > time.time() - 2, "the healthy subscriber stopped receiving"
        stop_within_limit(d)
        assert "refused" in d.stderr_path.read_text()


def zmtp_greeting() -> bytes:
    """ZMTP 3.0 greeting, NULL mechanism, as a SUB would send it."""
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def closed_by_peer(peer: socket.socket, timeout_s: float = 5.0) -> bool:
    """Read (and discard) until the other side closes; False if it is still open after timeout_s."""
    peer.settimeout(timeout_s)
    try:
        while peer.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return True


def test_oversized_frame_header_is_refused(tmp_path: Path, tiny_model: dict) -> None:
    """A peer completes the handshake and announces a 4 GB message, then streams data: the daemon
    drops the connection instead of allocating, and keeps publishing."""
    d, bind = start_daemon(tmp_path, tiny_model)
    host, port = bind.removeprefix("tcp://").rsplit(":", 1)
    with d:
        rss_before = rss_bytes(d.proc.pid)
        dropped = 0
        for _ in range(3):
            with socket.create_connection((host, int(port)), timeout=5) as peer:
                peer.sendall(zmtp_greeting())
                ready = b"\x05READY\x0bSocket-Type\x00\x00\x00\x03SUB"
                peer.sendall(b"\x04" + bytes([len(ready)]) + ready)
                # long message frame, 4 GB announced, then 8 MB of it
                peer.sendall(b"\x02" + struct.pack(">Q", 4 * 2**30))
                try:
                    for _chunk in range(128):
                        peer.sendall(b"\x01" + os.urandom(65535))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                dropped += closed_by_peer(peer)
            d.pump(0.5)
        grown = rss_bytes(d.proc.pid) - rss_before
        d.pump(1.0)
        dets = detections_of(d.messages)
        assert dropped == 3, "the daemon kept reading a 4 GB message"
        assert grown < RSS_GROWTH_LIMIT, f"RSS grew {grown / 2**20:.0f} MB"
        assert missing_seqs(dets) == 0
        assert dets[-1]["published_at"] > time.time() - 2
        stop_within_limit(d)
