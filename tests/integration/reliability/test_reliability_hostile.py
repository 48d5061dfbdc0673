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
from tests.support.reliability import detections, missing_seqs, open_fds, rss_bytes, tiny_model_section

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


def stop_within_limit(d: DaemonProcess, signum: int = signal.SIGTERM) -> float:
    started = time.monotonic()
    d.proc.send_signal(signum)
    run = d.finish(timeout=15)
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-2000:]
    assert took < SIGTERM_LIMIT_S, f"SIGTERM took {took:.1f}s"
    return took


def test_subscription_flood_is_bounded(tmp_path: Path, tiny_model: dict) -> None:
    """20,000 unique subscriptions (1 KB ones, then topic-sized ones) from one peer: RSS stays within
    100 MB, the healthy subscriber misses nothing. Then SIGUSR1, a signal the daemon has no use for
    (it used to kill it silently): it stops like SIGTERM, within 5 s, and says why."""
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
        stop_within_limit(d, signal.SIGUSR1)
        log = d.stderr_path.read_text()
    assert "publish: refused" in log
    assert "received SIGUSR1: stopping as for SIGTERM" in log and "summary cam: final state stopped" in log


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


def test_oversized_frames_and_idle_connections_on_the_publish_port(tmp_path: Path, tiny_model: dict) -> None:
    """A peer completes the handshake and announces a 4 GB message, then streams data: the daemon
    drops the connection instead of allocating. Then 200 idle connections: dropped after the
    handshake timeout. The healthy subscriber misses nothing throughout."""
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
        assert dropped == 3, "the daemon kept reading a 4 GB message"
        assert grown < RSS_GROWTH_LIMIT, f"RSS grew {grown / 2**20:.0f} MB"

        # 200 connections that never send the ZMTP greeting: closed after the handshake timeout (5 s)
        fds_before = open_fds(d.proc.pid)
        idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(200)]
        try:
            d.pump(1.0)
            fds_during = open_fds(d.proc.pid)
            d.pump(6.0)
            closed = sum(closed_by_peer(peer, timeout_s=0.5) for peer in idle)
            fds_after = open_fds(d.proc.pid)
        finally:
            for peer in idle:
                peer.close()
        assert fds_during >= fds_before + 150, (fds_before, fds_during)  # the attack was real
        assert closed == 200 and fds_after <= fds_before + 5, (closed, fds_before, fds_after)
        dets = detections_of(d.messages)
        assert missing_seqs(dets) == 0
        assert dets[-1]["published_at"] > time.time() - 2
        stop_within_limit(d)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def get_healthz(port: int, timeout_s: float = 3.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        head = s.recv(64)
    return int(head.split()[1])


def test_fd_exhaustion_through_the_metrics_port(tmp_path: Path, tiny_model: dict) -> None:
    """Idle connections to /metrics with the daemon's fd limit low (accept fails with EMFILE): accept
    backs off instead of spinning, the cameras keep publishing (the file camera's own EMFILE retry is
    tested in tests/unit/sources/test_file_source.py), /healthz answers again once the idle
    connections time out, no traceback, and the healthy subscriber misses nothing."""
    import resource

    from tests.support.media import make_clip
    from tests.support.reliability import free_port, statuses

    metrics_port = free_port()
    bind = free_tcp_endpoint()
    clip = make_clip(tmp_path / "short.mp4", 64, 48, 3, fps=25)  # reopened 8 times a second
    cfg = write_config(tmp_path / "cfg.yaml", [{"id": "cam", "url": "synthetic:64x48@25"},
                                               {"id": "loopy", "url": str(clip), "loop": True}],
                       tiny_model, publish={"bind": bind}, metrics={"bind": f"127.0.0.1:{metrics_port}"})
    attackers: list[socket.socket] = []
    with DaemonProcess(cfg) as d:
        assert d.pump_until(lambda msgs: len(detections(msgs, "loopy")) >= 5, timeout=60), d.stderr_path.read_text()
        in_use = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
        resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, (in_use + 8, in_use + 8))
        try:
            for _ in range(300):
                try:
                    attackers.append(socket.create_connection(("127.0.0.1", metrics_port), timeout=1))
                except OSError:  # the listen backlog is full: that is the kernel's bound, and fine
                    break
            cpu_before, wall_before = cpu_seconds(d.proc.pid), time.monotonic()
            d.pump(3.0)
            cpu_share = (cpu_seconds(d.proc.pid) - cpu_before) / (time.monotonic() - wall_before)
            assert d.proc.poll() is None, d.stderr_path.read_text()[-3000:]
        finally:
            for peer in attackers:
                peer.close()
        # after the idle connections time out (metrics CLIENT_TIMEOUT_S), everything is back
        assert d.pump_until(lambda msgs: statuses(msgs, "loopy")[-1]["state"] == "up", timeout=20)
        count_before = len(detections(d.messages, "loopy"))
        d.pump(2.0)
        assert len(detections(d.messages, "loopy")) > count_before, "the looping file camera did not come back"
        for _ in range(20):  # clients that reset mid-request: a traceback each, before
            with socket.create_connection(("127.0.0.1", metrics_port), timeout=5) as peer:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                peer.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        deadline = time.monotonic() + 10
        while get_healthz(metrics_port) != 200:
            assert time.monotonic() < deadline, "/healthz does not answer 200"
            time.sleep(0.5)
        stop_within_limit(d)
        log = d.stderr_path.read_text()
    assert missing_seqs(detections(d.messages, "cam")) == 0
    assert missing_seqs(detections(d.messages, "loopy")) == 0
    assert "Traceback" not in log, log[-3000:]
    assert "metrics:" in log  # the refusals were logged, one line each (rate-limited)
    assert cpu_share < 0.9, f"daemon used {cpu_share:.0%} of a core while flooded (accept loop spinning?)"
    print(f"cpu share while flooded: {cpu_share:.2f}; {len(attackers)} connections held")
