"""ZeroMQ CURVE on the publish socket, with real sockets and real key files (zmq.auth): an authorized
subscriber receives, an unauthorized one (wrong key, or no CURVE at all) receives nothing; a key
added to authorized_clients_dir gets in after reload; `pipeline subscribe` uses the keys by flag."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from pipeline.config import ConfigError, CurveConfig, parse_config
from pipeline.frame import CameraState, StatusEvent
from pipeline.publish.publisher import Publisher, PublishCurveError
from pipeline.publish.subscriber import CurveClientKeys, Subscriber
from tests.support.daemon_harness import REPO, free_tcp_endpoint, write_config
from tests.support.tiny_model import build_tiny_yolo_onnx


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """server, alice (authorized), mallory (not): *.key (public) and *.key_secret files."""
    made = tmp_path / "made"
    made.mkdir()
    for name in ("server", "alice", "mallory"):
        zmq.auth.create_certificates(made, name)
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    shutil.copy(made / "alice.key", authorized / "alice.key")
    return {"dir": made, "authorized": authorized}


def client(keys: dict[str, Path], name: str) -> CurveClientKeys:
    return CurveClientKeys.from_files(keys["dir"] / "server.key", keys["dir"] / f"{name}.key_secret")


def test_only_authorized_subscribers_receive(keys: dict[str, Path]) -> None:
    ctx = zmq.Context()
    curve = CurveConfig(server_secret_key_file=keys["dir"] / "server.key_secret",
                        authorized_clients_dir=keys["authorized"])
    pub = Publisher(ctx, "tcp://127.0.0.1:*", 1000, 0, curve=curve)
    alice = Subscriber(pub.endpoint, curve=client(keys, "alice"))
    mallory = Subscriber(pub.endpoint, curve=client(keys, "mallory"))
    plain = Subscriber(pub.endpoint)
    got: dict[str, int] = {"alice": 0, "mallory": 0, "plain": 0}

    def publish_and_collect(until) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not until():
            pub.publish_status(StatusEvent("cam", CameraState.UP, time.time(), "x"))
            for name, sub in (("alice", alice), ("mallory", mallory), ("plain", plain)):
                while sub.recv(timeout=0.01) is not None:
                    got[name] += 1
        return until()

    try:
        # everything alice gets was published while the others were connected just as long
        assert publish_and_collect(lambda: got["alice"] >= 30)
        assert got["mallory"] == 0 and got["plain"] == 0

        shutil.copy(keys["dir"] / "mallory.key", keys["authorized"] / "mallory.key")
        assert pub.reload_curve_clients() == 2
        # a denied SUB does not retry the handshake: once authorized, mallory connects anew and gets in
        mallory.close()
        mallory = Subscriber(pub.endpoint, curve=client(keys, "mallory"))
        assert publish_and_collect(lambda: got["mallory"] >= 5), got
        assert got["plain"] == 0  # no CURVE at all: never
    finally:
        for sub in (alice, mallory, plain):
            sub.close()
        pub.close()
        ctx.term()


def test_public_half_as_secret_key_is_a_one_line_error(keys: dict[str, Path]) -> None:
    ctx = zmq.Context()
    try:
        curve = CurveConfig(server_secret_key_file=keys["dir"] / "server.key",  # the public half
                            authorized_clients_dir=keys["authorized"])
        with pytest.raises(PublishCurveError, match=r"^publish.curve.server_secret_key_file: .*server.key: has no "
                                                    r"secret key"):
            Publisher(ctx, "tcp://127.0.0.1:*", 1000, 0, curve=curve)
    finally:
        ctx.term()  # nothing left open: term() returns


def test_config_names_a_missing_key_file(tmp_path: Path, keys: dict[str, Path]) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    text = (f"cameras: [{{id: a, url: 'synthetic:64x48@5'}}]\nmodel: {{path: {model}, labels: [x]}}\n"
            f"publish:\n  curve:\n    server_secret_key_file: nope.key_secret\n"
            f"    authorized_clients_dir: {keys['authorized']}\n")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cfg.yaml", base=tmp_path)
    assert str(err.value) == (f"cfg.yaml:5: publish.curve.server_secret_key_file: no such file "
                              f"{tmp_path / 'nope.key_secret'}")


def test_daemon_with_curve_and_the_subscribe_cli(tmp_path: Path, keys: dict[str, Path]) -> None:
    model = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=3, input_size=64)
    bind = free_tcp_endpoint()
    cfg = write_config(tmp_path / "cfg.yaml", [{"id": "a", "url": "synthetic:64x48@15"}],
                       {"path": str(model), "labels": ["r", "g", "b"], "input_size": 64},
                       publish={"bind": bind, "curve": {"server_secret_key_file": str(keys["dir"] / "server.key_secret"),
                                                        "authorized_clients_dir": str(keys["authorized"])}})
    stderr = open(tmp_path / "daemon.log", "w")
    daemon = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(cfg), "--status-interval", "0"],
                              cwd=REPO, stderr=stderr, stdout=subprocess.DEVNULL)
    try:
        out = subprocess.run([sys.executable, "-m", "pipeline", "subscribe", bind, "--count", "3", "--kind", "det",
                              "--curve-server-key", str(keys["dir"] / "server.key"),
                              "--curve-client-key", str(keys["dir"] / "alice.key_secret")],
                             cwd=REPO, capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, (out.stderr, (tmp_path / "daemon.log").read_text())
        lines = [json.loads(ln) for ln in out.stdout.splitlines()]
        assert len(lines) == 3 and all(ln["topic"] == "det/a/" for ln in lines)
        half = subprocess.run([sys.executable, "-m", "pipeline", "subscribe", bind,
                               "--curve-server-key", str(keys["dir"] / "server.key")],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert half.returncode == 2 and "go together" in half.stderr
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        stderr.close()
    assert daemon.returncode == 0, (tmp_path / "daemon.log").read_text()
