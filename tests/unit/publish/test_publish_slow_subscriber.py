"""A stuck subscriber next to a healthy one, on real ZeroMQ TCP sockets: the healthy one gets
every message, and what the stuck one misses is counted (a lower bound, see publisher.py)."""
from __future__ import annotations

import json
import time

import zmq

from pipeline.frame import Detection, FrameDetections
from pipeline.observe.metrics import Metrics
from pipeline.publish import Publisher

MESSAGES = 3000
DETECTIONS = 60  # ~5 KB per message: the stuck subscriber's buffers fill after a few hundred


def frame(index: int) -> FrameDetections:
    dets = tuple(Detection("person", 0, 0.5, (float(i), 1.0, float(i) + 2.0, 3.0)) for i in range(DETECTIONS))
    return FrameDetections("cam", index, index / 25, time.time(), 640, 480, dets)


def sub(context: zmq.Context, url: str, rcvhwm: int, rcvbuf: int | None = None) -> zmq.Socket:
    s = context.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, rcvhwm)
    if rcvbuf:
        s.setsockopt(zmq.RCVBUF, rcvbuf)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SUBSCRIBE, b"det/")
    s.connect(url)
    return s


def seqs(sock: zmq.Socket, quiet_ms: int = 500) -> list[int]:
    out = []
    while sock.poll(quiet_ms):
        out.append(json.loads(sock.recv_multipart()[1])["seq"])
    return out


def test_stuck_subscriber_loses_messages_the_healthy_one_does_not() -> None:
    context = zmq.Context()
    metrics = Metrics()
    publisher = Publisher(context, "tcp://127.0.0.1:*", high_water_mark=20, linger_ms=0, metrics=metrics)
    healthy = sub(context, publisher.endpoint, rcvhwm=100_000)
    stuck = sub(context, publisher.endpoint, rcvhwm=5, rcvbuf=4096)
    try:
        assert publisher.wait_for_subscribers(2, timeout_s=5) == 2
        got: list[int] = []
        for i in range(MESSAGES):
            publisher.publish_detections(frame(i))
            if healthy.poll(2000):  # the healthy subscriber keeps up: it reads each message at once
                got.append(json.loads(healthy.recv_multipart()[1])["seq"])
        got += seqs(healthy)
        stuck_got = seqs(stuck)  # it finally reads: its backlog, then nothing more
    finally:
        publisher.close()
        healthy.close()
        stuck.close()
        context.term()
    assert got == list(range(MESSAGES))
    missed = MESSAGES - len(stuck_got)
    counted = metrics.value("pipeline_messages_dropped_total", kind="det")
    assert stuck_got == sorted(stuck_got) and missed > MESSAGES // 2
    assert 1 <= counted <= missed, (counted, missed)
    assert metrics.value("pipeline_frames_published_total", camera="cam") == MESSAGES  # the healthy one got them
