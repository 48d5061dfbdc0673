"""`pipeline bridge` with real brokers started here (mosquitto, redis-server from Debian), fed by a
real daemon (CPU, tiny real ONNX model, a small looping clip) or a plain ZeroMQ PUB socket."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import redis
import yaml
import zmq

from tests.support.daemon_harness import REPO, DaemonProcess, free_tcp_endpoint, write_config
from tests.support.media import make_clip
from tests.support.scaleout import Mosquitto, RedisServer, free_port, http_get, pipeline_process, require_binary


FPS = 20  # the daemon's clip, read in real time


def bridge_config(path: Path, source: str, sinks: list[dict], metrics_port: int | None = None, **more) -> Path:
    doc = {"source": {"url": source}, "sinks": sinks,
           "metrics": {"bind": f"127.0.0.1:{metrics_port}" if metrics_port else None}, **more}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class MqttCollector:
    """A real MQTT subscriber (paho) with a persistent session, so it misses nothing while the broker
    restarts (the broker keeps its session on disk)."""

    def __init__(self, port: int, topic: str = "pipeline/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-collector", clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(port: int, topic: str) -> bytes | None:
    got: list[bytes] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect = lambda c_, u, f, rc, p: c_.subscribe(topic, qos=1)
    c.on_message = lambda c_, u, m: got.append(m.payload)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 3
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    return got[-1] if got else None


def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def metric(port: int, name: str) -> float:
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_daemon_to_mqtt_and_redis_through_broker_restarts(tmp_path: Path, tiny_model: dict) -> None:
    mosquitto = Mosquitto(tmp_path, extra=f"persistence true\npersistence_location {tmp_path}/\n"
                                          f"max_queued_messages 0\n").start()
    redis_server = RedisServer(tmp_path, ("--appendonly", "yes", "--appendfsync", "always")).start()
    collector = MqttCollector(mosquitto.port)
    daemon_bind, metrics_port = free_tcp_endpoint(), free_port()
    cfg = bridge_config(tmp_path / "bridge.yaml", daemon_bind, [
        {"type": "mqtt", "name": "home", "url": f"mqtt://127.0.0.1:{mosquitto.port}", "prefix": "pipeline", "qos": 1},
        {"type": "redis", "name": "streams", "url": f"redis://127.0.0.1:{redis_server.port}", "maxlen": 10000},
    ], metrics_port)
    bridge = pipeline_process(["bridge", str(cfg)], tmp_path / "bridge.log")
    clip = make_clip(tmp_path / "clip.mp4", 96, 64, 20, fps=FPS)
    daemon_cfg = write_config(tmp_path / "daemon.yaml", [{"id": "gate", "url": str(clip), "loop": True, "realtime": True}],
                              tiny_model, publish={"bind": daemon_bind})
    try:
        # our direct subscriber and the bridge: the daemon waits for both
        with DaemonProcess(daemon_cfg, extra_args=("--wait-for-subscribers", "2")) as daemon:
            def count():
                return sum(1 for t, _ in daemon.messages if t.startswith("det/"))

            assert daemon.pump_until(lambda ms: count() >= 10, timeout=60), daemon.stderr_path.read_text()
            assert http_get(f"http://127.0.0.1:{metrics_port}/healthz")[0] == 200

            t_kill = time.time()
            mosquitto.process.stop()  # SIGTERM: mosquitto keeps the collector's session on disk
            redis_server.process.kill()  # SIGKILL: Redis keeps what it acknowledged (appendfsync always)
            daemon.pump(2.0)
            status, body = http_get(f"http://127.0.0.1:{metrics_port}/healthz")
            assert status == 503 and "sink home" in body and "not connected" in body, body
            held = re.search(r"sink home \(.*; (\d+) buffered", body)
            assert held and int(held.group(1)) > 0, body  # the outage's messages wait in the bridge
            t_restart = time.time()
            mosquitto.start()
            redis_server.start()
            assert wait_until(lambda: http_get(f"http://127.0.0.1:{metrics_port}/healthz")[0] == 200, 20), \
                bridge.output()
            daemon.pump(1.0)
            daemon.terminate()
            run = daemon.finish(30)
        assert run.returncode == 0, run.stderr
        published = run.detections("gate")
        # the daemon's own publishing is untouched by the broker outage: no seq gap, same pace
        assert [m["seq"] for m in published] == list(range(len(published)))
        # rates by the daemon's own published_at (our subscriber may read late, the daemon's clock does not)
        first = published[0]["published_at"]
        before_rate = sum(1 for m in published if m["published_at"] < t_kill) / (t_kill - first)
        outage_rate = sum(1 for m in published if t_kill <= m["published_at"] < t_restart) / (t_restart - t_kill)
        assert outage_rate > 0.6 * min(before_rate, FPS), (outage_rate, before_rate)
        want = {m["seq"]: m for m in published}

        def redis_entries():
            r = redis.Redis(port=redis_server.port)
            try:
                return r.xrange("pipeline:gate")
            finally:
                r.close()

        def mqtt_det():
            return {json.loads(p)["seq"]: json.loads(p) for t, p, _ in collector.snapshot()
                    if t == "pipeline/gate/detections"}

        assert wait_until(lambda: set(mqtt_det()) >= set(want) and
                          {json.loads(f[b"message"])["seq"] for _, f in redis_entries()
                           if f[b"topic"] == b"det/gate/"} >= set(want), 20), bridge.output()
        assert mqtt_det() == want  # every message, the same JSON
        from_redis = {}
        for _, fields in redis_entries():
            msg = json.loads(fields[b"message"])
            if fields[b"topic"] == b"det/gate/":
                from_redis[msg["seq"]] = msg
        assert from_redis == want
        statuses = [json.loads(p)["state"] for t, p, _ in collector.snapshot() if t == "pipeline/gate/status"]
        assert statuses[0] == "starting" and statuses[-1] in ("stopped", "eof"), statuses
        assert metric(metrics_port, 'pipeline_bridge_dropped_total{sink="home"}') == 0
        assert metric(metrics_port, 'pipeline_bridge_reconnects_total{sink="home"}') >= 1
        assert metric(metrics_port, 'pipeline_bridge_reconnects_total{sink="streams"}') >= 1
        assert retained(mosquitto.port, "pipeline/gate/status") is not None  # camera status is retained
        assert retained(mosquitto.port, "pipeline/available") == b"online"
        assert bridge.stop() == 0, bridge.output()
        assert retained(mosquitto.port, "pipeline/available") == b"offline"  # said on a clean exit
        assert "Traceback" not in bridge.output()
    finally:
        collector.close()
        bridge.close()
        mosquitto.kill()
        redis_server.kill()


def test_buffer_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    """Redis away while 100 messages arrive, buffer 20: the newest 20 arrive after the restart,
    80 are counted as dropped; none vanishes uncounted. Fed by a plain ZeroMQ PUB socket."""
    require_binary("redis-server")
    redis_port, metrics_port = free_port(), free_port()
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    source = free_tcp_endpoint()
    pub.bind(source)
    cfg = bridge_config(tmp_path / "bridge.yaml", source, [
        {"type": "redis", "name": "streams", "url": f"redis://127.0.0.1:{redis_port}", "buffer": 20,
         "stream": "all"}], metrics_port)
    bridge = pipeline_process(["bridge", str(cfg)], tmp_path / "bridge.log")
    redis_server = RedisServer(tmp_path, port=redis_port)
    try:
        assert wait_until(lambda: "cannot connect" in bridge.output(), 15), bridge.output()
        time.sleep(0.5)  # the bridge's SUB connected and subscribed
        for seq in range(100):
            pub.send_multipart([f"evt/cam{seq % 3}/".encode(), json.dumps({"seq": seq}).encode()])
        assert wait_until(lambda: metric(metrics_port, "pipeline_bridge_received_total") == 100, 10)
        redis_server.start()
        assert wait_until(lambda: metric(metrics_port, 'pipeline_bridge_delivered_total{sink="streams"}') == 20, 20), \
            bridge.output()
        r = redis.Redis(port=redis_port)
        entries = r.xrange("all")
        r.close()
        assert [json.loads(f[b"message"])["seq"] for _, f in entries] == list(range(80, 100))
        assert {f[b"topic"] for _, f in entries} == {b"evt/cam0/", b"evt/cam1/", b"evt/cam2/"}  # any kind passes
        assert metric(metrics_port, 'pipeline_bridge_dropped_total{sink="streams"}') == 80
        assert "80 oldest message(s) dropped" in bridge.output() or "dropped so far" in bridge.output()
        # every metric the bridge exposes is in docs/scale-out.md's table, and only those
        _, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                   if line.startswith("pipeline_bridge_") and "_created" not in line.split(" ")[0]}
        documented = set(re.findall(r"^\| `(pipeline_bridge_\w+)", (REPO / "docs" / "scale-out.md").read_text(), re.M))
        assert exposed == documented
    finally:
        bridge.close()
        redis_server.kill()
        pub.close(linger=0)
        context.term()


def _tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if not require_binary("openssl"):
        pytest.skip("openssl missing")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    return cert, key


def _run_bridge_once(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "bridge", str(cfg)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def _run_bridge_in_process(cfg: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """The same run_bridge the command calls, without paying a Python start per case."""
    from pipeline.bridge.command import run_bridge

    capsys.readouterr()
    rc = run_bridge(str(cfg), threading.Event())  # a fatal sink returns before waiting on the event
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("case", ["mqtt-password", "mqtt-tls", "mqtt-host", "redis-password", "redis-tls"])
def test_unusable_sink_is_one_line_naming_it(tmp_path: Path, case: str, capsys: pytest.CaptureFixture) -> None:
    broker: Mosquitto | RedisServer | None = None
    try:
        if case == "mqtt-password":
            passwords = tmp_path / "passwd"
            subprocess.run([require_binary("mosquitto_passwd"), "-b", "-c", str(passwords), "cam", "right"], check=True)
            broker = Mosquitto(tmp_path, extra=f"allow_anonymous false\npassword_file {passwords}\n").start()
            sink = {"type": "mqtt", "name": "home", "url": f"mqtt://cam:wrong@127.0.0.1:{broker.port}"}
            expect = "broker refused the connection: "
        elif case == "mqtt-tls":
            cert, key = _tls_files(tmp_path)
            port = free_port()
            broker = Mosquitto(tmp_path, port=free_port(),
                               extra=f"listener {port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n").start()
            sink = {"type": "mqtt", "name": "home", "url": f"mqtts://127.0.0.1:{port}"}  # self-signed: not trusted
            expect = "TLS: "
        elif case == "mqtt-host":
            sink = {"type": "mqtt", "name": "home", "url": "mqtt://no-such-host.invalid:1883"}
            expect = "cannot resolve host"
        elif case == "redis-password":
            broker = RedisServer(tmp_path, ("--requirepass", "right")).start()
            sink = {"type": "redis", "name": "home", "url": f"redis://:wrong@127.0.0.1:{broker.port}"}
            expect = "authentication failed"
        else:
            cert, key = _tls_files(tmp_path)
            broker = RedisServer(tmp_path, ("--tls-port", str(free_port()), "--tls-cert-file", str(cert),
                                            "--tls-key-file", str(key), "--tls-auth-clients", "no"))
            broker.start()
            tls_port = int(broker.args[1])
            sink = {"type": "redis", "name": "home", "url": f"rediss://127.0.0.1:{tls_port}"}
            expect = "TLS: "
        cfg = bridge_config(tmp_path / "bridge.yaml", free_tcp_endpoint(), [sink])
        if case == "mqtt-password":  # one case through the real command line: exit code and stderr
            done = _run_bridge_once(cfg)
            rc, stderr = done.returncode, done.stderr
        else:
            rc, stderr = _run_bridge_in_process(cfg, capsys)
    finally:
        if broker is not None:
            broker.kill()
    assert rc == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pipeline bridge: sink home ({sink['type']} "), stderr
    assert expect in lines[0], lines[0]
    assert "wrong" not in lines[0]  # a password never reaches the log


def test_bad_broker_url_is_a_config_error_with_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text("sinks:\n  - type: mqtt\n    name: home\n    url: http://broker:1883\n")
    done = _run_bridge_once(cfg)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"{cfg}:4: sinks[0].url: url scheme http:// is not one of mqtt://, mqtts://")


def test_bridge_subscribes_with_curve_to_a_curve_publisher(tmp_path: Path) -> None:
    """source.curve: the bridge is a CURVE client of the daemon's publisher (the real Publisher here)."""
    import zmq.auth

    from pipeline.config import CurveConfig
    from pipeline.frame import StatusEvent
    from pipeline.publish.publisher import Publisher

    for name in ("daemon", "bridge"):
        zmq.auth.create_certificates(tmp_path, name)
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "bridge.key").write_bytes((tmp_path / "bridge.key").read_bytes())
    redis_server = RedisServer(tmp_path).start()
    context = zmq.Context()
    source = free_tcp_endpoint()
    pub = Publisher(context, source, 1000, 0, curve=CurveConfig(server_secret_key_file=tmp_path / "daemon.key_secret",
                                                                authorized_clients_dir=clients))
    cfg = bridge_config(tmp_path / "bridge.yaml", source, [
        {"type": "redis", "name": "streams", "url": f"redis://127.0.0.1:{redis_server.port}"}])
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["curve"] = {"server_key_file": "daemon.key", "client_secret_key_file": "bridge.key_secret"}
    cfg.write_text(yaml.safe_dump(doc))  # relative paths: against the config's folder
    bridge = pipeline_process(["bridge", str(cfg)], tmp_path / "bridge.log")
    r = redis.Redis(port=redis_server.port)
    try:
        def arrived() -> bool:
            pub.publish_status(StatusEvent("door", "up", time.time(), ""))
            return r.exists("pipeline:door") == 1
        assert wait_until(arrived, 20, step=0.2), bridge.output()
        _, fields = r.xrange("pipeline:door")[0]
        assert fields[b"topic"] == b"status/door/" and json.loads(fields[b"message"])["state"] == "up"
    finally:
        r.close()
        bridge.close()
        pub.close()
        context.term()
        redis_server.kill()
