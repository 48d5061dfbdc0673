"""Throughput of `pipeline relay` and `pipeline bridge` (MQTT, Redis Streams) on this machine.

    python3 scripts/bench_scaleout.py relay|mqtt|redis [--rate 4500] [--seconds 10] [--cameras 150]
                                      [--qos 1] [--out FILE.json]

A synthetic publisher (a real ZeroMQ PUB socket, in this process) sends pipeline.detections/1
messages with 10 detections each, round robin over --cameras cameras, paced at --rate messages/s
for --seconds. The side process under test runs as a real subprocess (`python -m pipeline relay`
or `... bridge`), and for the bridges a real broker (Debian's mosquitto or redis-server) on a free
loopback port. The far end counts what arrives: a ZeroMQ SUB behind the relay, a paho subscriber
on the MQTT broker, XLEN/XRANGE on Redis. Reported: messages sent, received, lost (by seq), the
achieved rate (received / time from the first send to the last arrival) and the lag of the last
message. The default rate is 150 cameras x 30 fps = 4,500 messages/s (10 detections each).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.scaleout import Mosquitto, RedisServer, free_port, pipeline_process  # noqa: E402


def payload(camera: str, seq: int) -> bytes:
    now = time.time()
    dets = [{"label": "person", "class_id": 0, "score": 0.5 + i / 40, "box": [10.0 * i, 20.0, 10.0 * i + 50.5, 180.25]}
            for i in range(10)]
    return json.dumps({"schema": "pipeline.detections/1", "camera": camera, "seq": seq, "frame": seq, "pts": seq / 30,
                       "captured_at": now, "published_at": now, "width": 1920, "height": 1080, "detections": dets},
                      separators=(",", ":")).encode()


def publish(sock: zmq.Socket, rate: float, seconds: float, cameras: int) -> tuple[int, float, float]:
    """Paced in 10 ms slices; returns (sent, first send time, last send time)."""
    seqs = [0] * cameras
    total = int(rate * seconds)
    start = time.time()
    sent = 0
    while sent < total:
        due = min(total, int((time.time() - start) * rate) + 1)
        while sent < due:
            cam = sent % cameras
            sock.send_multipart([f"det/cam{cam}/".encode(), payload(f"cam{cam}", seqs[cam])])
            seqs[cam] += 1
            sent += 1
        time.sleep(0.005)
    return sent, start, time.time()


class Arrivals:
    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.seen: dict[str, set[int]] = {}
        self.lock = threading.Lock()

    def add(self, body: bytes) -> None:
        msg = json.loads(body)
        with self.lock:
            self.count += 1
            self.last = time.time()
            self.seen.setdefault(msg["camera"], set()).add(msg["seq"])

    def unique(self) -> int:
        return sum(len(s) for s in self.seen.values())


def wait_quiet(arrivals: Arrivals, sent: int, quiet_s: float = 3.0, limit_s: float = 120.0) -> None:
    deadline = time.time() + limit_s
    last_count, last_change = -1, time.time()
    while time.time() < deadline and arrivals.unique() < sent:
        if arrivals.count != last_count:
            last_count, last_change = arrivals.count, time.time()
        elif time.time() - last_change > quiet_s:
            break
        time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", choices=["relay", "mqtt", "redis"])
    ap.add_argument("--rate", type=float, default=4500.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cameras", type=int, default=150)
    ap.add_argument("--qos", type=int, default=1, choices=[0, 1, 2])
    ap.add_argument("--out")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 1_000_000)
    source = f"tcp://127.0.0.1:{free_port()}"
    pub.bind(source)
    arrivals = Arrivals()
    stop = threading.Event()
    side, broker = None, None
    try:
        if args.target == "relay":
            out_url = f"tcp://127.0.0.1:{free_port()}"
            side = pipeline_process(["relay", "--from", source, "--bind", out_url, "--hwm", "100000"], work / "relay.log")
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.RCVHWM, 1_000_000)
            sub.connect(out_url)
            sub.subscribe(b"det/")

            def receive() -> None:
                while not stop.is_set():
                    if sub.poll(100):
                        arrivals.add(sub.recv_multipart()[1])
                sub.close(linger=0)
            threading.Thread(target=receive, daemon=True).start()
        elif args.target == "mqtt":
            import paho.mqtt.client as mqtt

            broker = Mosquitto(work, extra="max_queued_messages 0\nmax_inflight_messages 0\n").start()
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench")
            client.on_connect = lambda c, u, f, rc, p: c.subscribe("pipeline/+/detections", qos=args.qos)
            client.on_message = lambda c, u, m: arrivals.add(m.payload)
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            sink = {"type": "mqtt", "name": "bench", "url": f"mqtt://127.0.0.1:{broker.port}", "qos": args.qos,
                    "buffer": 1_000_000}
        else:
            broker = RedisServer(work).start()
            sink = {"type": "redis", "name": "bench", "url": f"redis://127.0.0.1:{broker.port}", "buffer": 1_000_000,
                    "stream": "all", "maxlen": None}
        if args.target != "relay":
            import yaml

            cfg = work / "bridge.yaml"
            cfg.write_text(yaml.safe_dump({"source": {"url": source}, "sinks": [sink], "metrics": {"bind": None}}))
            side = pipeline_process(["bridge", str(cfg)], work / "bridge.log")
        time.sleep(3.0)  # the side process starts, connects and subscribes
        sent, t0, t_end = publish(pub, args.rate, args.seconds, args.cameras)
        if args.target == "redis":
            import redis

            r = redis.Redis(port=broker.port)
            last_len, last_change = -1, time.time()
            while time.time() - last_change < 3.0 and last_len < sent:
                n = r.xlen("all")
                if n != last_len:
                    last_len, last_change = n, time.time()
                    arrivals.count, arrivals.last = n, time.time()
                time.sleep(0.05)
            for _, fields in r.xrange("all"):
                msg = json.loads(fields[b"message"])
                arrivals.seen.setdefault(msg["camera"], set()).add(msg["seq"])
            r.close()
        else:
            wait_quiet(arrivals, sent)
        unique = arrivals.unique()
        span = max(arrivals.last, t_end) - t0
        result = {
            "target": args.target, "qos": args.qos if args.target == "mqtt" else None,
            "rate_asked": args.rate, "seconds": args.seconds, "cameras": args.cameras,
            "sent": sent, "received": arrivals.count, "unique": unique, "lost": sent - unique,
            "send_rate": round(sent / (t_end - t0), 1), "achieved_rate": round(unique / span, 1),
            "last_arrival_lag_s": round(max(0.0, arrivals.last - t_end), 2),
            "machine": f"{platform.node()} {platform.processor() or platform.machine()} "
                       f"{len(__import__('os').sched_getaffinity(0))} cpus",
            "loadavg_1m_at_end": round(__import__("os").getloadavg()[0], 2),  # the 2 cores are shared
            "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip(),
        }
        print(json.dumps(result))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        stop.set()
        if side is not None:
            side.stop()
            side.close()
        if broker is not None:
            broker.kill()
        pub.close(linger=0)
        time.sleep(0.2)
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
