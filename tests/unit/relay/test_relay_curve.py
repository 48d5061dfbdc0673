"""The Relay in-process with real ZeroMQ sockets: CURVE on both sides (the daemon's Publisher as the
source), subscriptions reaching the source, and one-line start errors."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from pipeline.config import CurveConfig
from pipeline.frame import StatusEvent
from pipeline.publish.publisher import Publisher
from pipeline.publish.subscriber import CurveClientKeys, Subscriber
from pipeline.relay.relay import Relay, RelayError, upstream_curves
from tests.support.daemon_harness import free_tcp_endpoint


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    for name in ("daemon", "relay", "relay-server", "alice", "mallory"):
        zmq.auth.create_certificates(tmp_path, name)
    for name, allowed in (("daemon-clients", ["relay"]), ("relay-clients", ["alice"])):
        d = tmp_path / name
        d.mkdir()
        for who in allowed:
            (d / f"{who}.key").write_bytes((tmp_path / f"{who}.key").read_bytes())
    return {"dir": tmp_path}


def _pump(pub: Publisher, sub: Subscriber, camera: str, timeout: float = 5.0) -> tuple[str, dict] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish_status(StatusEvent(camera, "up", time.time(), ""))
        got = sub.recv(timeout=0.1)
        if got is not None:
            return got
    return None


def test_curve_on_both_sides_only_authorized_subscribers_get_messages(keys: dict[str, Path]) -> None:
    d = keys["dir"]
    ctx, daemon_ctx = zmq.Context(), zmq.Context()  # one ZAP authenticator per context: two processes really
    source, out = free_tcp_endpoint(), free_tcp_endpoint()
    pub = Publisher(daemon_ctx, source, 1000, 0, curve=CurveConfig(server_secret_key_file=d / "daemon.key_secret",
                                                            authorized_clients_dir=d / "daemon-clients"))
    relay = Relay(ctx, upstream_curves([source], [str(d / "daemon.key")], str(d / "relay.key_secret")), out, 1000,
                  CurveConfig(server_secret_key_file=d / "relay-server.key_secret",
                              authorized_clients_dir=d / "relay-clients"))
    relay.start()
    alice = Subscriber(out, camera="cam1", curve=CurveClientKeys.from_files(d / "relay-server.key",
                                                                            d / "alice.key_secret"))
    mallory = Subscriber(out, curve=CurveClientKeys.from_files(d / "relay-server.key", d / "mallory.key_secret"))
    try:
        got = _pump(pub, alice, "cam1")
        assert got is not None and got[0] == "status/cam1/" and got[1]["camera"] == "cam1"
        assert relay.upstream_connected == {source: True}
        assert mallory.recv(timeout=0.5) is None  # not in relay-clients: the handshake never completes
        # alice subscribed to cam1 only, and the filter runs at the source: cam2 never reaches her
        pub.publish_status(StatusEvent("cam2", "up", time.time(), ""))
        got = alice.recv(timeout=0.5)
        assert got is None or got[0] == "status/cam1/"
    finally:
        alice.close()
        mallory.close()
        relay.close()
        pub.close()
        ctx.term()
        daemon_ctx.term()


def test_relay_start_errors_are_one_line(tmp_path: Path) -> None:
    ctx = zmq.Context()
    try:
        with pytest.raises(RelayError, match=r"^relay --bind tcp://1\.2\.3\.4:6000: "):
            Relay(ctx, {free_tcp_endpoint(): None}, "tcp://1.2.3.4:6000")
        with pytest.raises(RelayError, match=r"^relay --from nonsense: "):
            Relay(ctx, {"nonsense": None}, free_tcp_endpoint())
        with pytest.raises(ValueError, match="one for all or one per --from"):
            upstream_curves(["tcp://a:1", "tcp://b:1", "tcp://c:1"], ["x", "y"], "z")
        with pytest.raises(ValueError, match="go together"):
            upstream_curves(["tcp://a:1"], ["x"], None)
    finally:
        ctx.term()


def test_relay_command_line_errors_name_the_option(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.daemon_harness import REPO

    zmq.auth.create_certificates(tmp_path, "relay")
    cases = [
        (["--curve-secret-key", str(tmp_path / "nope"), "--curve-clients", str(tmp_path)], 2,
         f"pipeline relay: --curve-secret-key {tmp_path / 'nope'}: no such file"),
        (["--curve-secret-key", str(tmp_path / "relay.key"), "--curve-clients", str(tmp_path)], 1,
         f"pipeline: relay --curve-secret-key: {tmp_path / 'relay.key'}: has no secret key"),
        (["--curve-server-key", str(tmp_path / "relay.key")], 2, "--curve-server-key and --curve-client-key go together"),
    ]
    for extra, code, line in cases:
        done = subprocess.run([sys.executable, "-m", "pipeline", "relay", "--from", free_tcp_endpoint(), "--bind",
                               free_tcp_endpoint(), *extra], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == code and len(done.stderr.splitlines()) == 1, done.stderr
        assert line in done.stderr, done.stderr
