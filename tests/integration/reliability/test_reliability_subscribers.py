"""A subscriber that stops reading must cost the healthy subscriber nothing: the real daemon keeps
publishing to it without a gap in seq, its memory stays bounded, and the stuck subscriber's
overflow is counted in /metrics.

What the count can be: ZeroMQ lets the publisher see the moment a subscriber's queue is full
(XPUB_NODROP makes that send fail with EAGAIN; see pipeline/publish/publisher.py), but after that
it skips the full subscriber silently until it has read half its queue. So
pipeline_messages_dropped_total counts messages that found a subscriber's queue full: each one
was really lost for that subscriber (a lower bound), and a subscriber that stays stuck counts
once per time it fills up. Its seq gaps tell the subscriber the exact number.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest
import zmq

from tests.support.daemon_harness import DaemonProcess, free_tcp_endpoint, write_config
from tests.support.reliability import (detections, free_port, metric_sum, missing_seqs, rss_bytes,
                                                   scrape_metrics, tiny_model_section)
from tests.support.media import make_clip

CAMERAS = ("north", "south", "east", "west")
FPS = 50
HWM = 100
RSS_SETTLE_S = 8.0  # the daemon's own warm-up (allocator arenas, ORT) grows RSS ~10 MB in its first seconds
RSS_WINDOW_S = 12.0
RSS_GROWTH_LIMIT = 6 * 2**20  # what the daemon may grow while a subscriber is stuck


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # score_threshold 0: every one of the 256 anchors is a detection, so messages are big (~17 KB)
    # and a stuck subscriber's buffers fill within a second.
    return tiny_model_section(tmp_path_factory.mktemp("model"), input_size=128, score_threshold=0.0)


def stuck_subscriber(context: zmq.Context, url: str) -> zmq.Socket:
    """A SUB socket with tiny buffers that nobody reads until we say so."""
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 10)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"det/")
    sock.connect(url)
    return sock


def catch_up(sock: zmq.Socket, timeout_s: float = 20.0) -> list[dict]:
    """Read the backlog until every camera's messages are live again (published after we began)."""
    started, out = time.time(), []
    live: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and sock.poll(1000):
        _topic, body = sock.recv_multipart()
        out.append(json.loads(body))
        if out[-1]["published_at"] > started:
            live.add(out[-1]["camera"])
            if live == set(CAMERAS):
                return out
    raise AssertionError(f"the stuck subscriber did not catch up ({len(out)} messages read, live: {live})")


def test_stuck_subscriber_costs_the_healthy_one_nothing(tmp_path: Path, tiny_model: dict) -> None:
    metrics_port = free_port()
    bind = free_tcp_endpoint()
    cams = [{"id": cid, "url": str(make_clip(tmp_path / f"{cid}.mp4", 160, 120, FPS, fps=FPS)), "loop": True}
            for cid in CAMERAS]
    cfg = write_config(tmp_path / "cfg.yaml", cams, tiny_model,
                       publish={"bind": bind, "high_water_mark": HWM},
                       metrics={"bind": f"127.0.0.1:{metrics_port}"})
    context = zmq.Context()
    stuck = stuck_subscriber(context, bind)
    try:
        with DaemonProcess(cfg, extra_args=("--wait-for-subscribers", "2")) as d:
            def dropped() -> float:
                return metric_sum(scrape_metrics(metrics_port), "pipeline_messages_dropped_total", kind="det")

            assert d.pump_until(lambda ms: len(ms) > 0, 30), d.stderr_path.read_text()  # up and serving
            deadline = time.monotonic() + 40
            while dropped() == 0:
                assert time.monotonic() < deadline and d.proc.poll() is None, d.stderr_path.read_text()
                d.pump(0.5)
            # The stuck subscriber's queues are full from here on: once the daemon has warmed up,
            # memory must stay flat. Queueing for it instead would grow RSS by ~3 MB a second.
            d.pump(RSS_SETTLE_S)
            rss = [rss_bytes(d.proc.pid)]
            for _ in range(int(RSS_WINDOW_S / 0.5)):
                d.pump(0.5)
                rss.append(rss_bytes(d.proc.pid))
            counted = dropped()
            got = catch_up(stuck)  # it reads again: what did it miss?
            d.terminate()
            run = d.finish(timeout=10)
    finally:
        stuck.close()
        context.term()
    assert run.returncode == 0, run.stderr

    for cid in CAMERAS:
        dets = detections(run.messages, cid)
        assert dets[0]["seq"] == 0 and missing_seqs(dets) == 0, cid  # the healthy subscriber lost nothing

    # What the stuck subscriber missed is far more than the daemon may grow: had the daemon queued
    # those messages instead of dropping them, its RSS would have risen by that much.
    missed = sum(missing_seqs([m for m in got if m["camera"] == cid]) for cid in CAMERAS)
    message_bytes = statistics.mean(len(json.dumps(m)) for m in detections(run.messages, CAMERAS[0]))
    assert missed * message_bytes > 2 * RSS_GROWTH_LIMIT, (missed, message_bytes)
    half = len(rss) // 2  # medians: Python's allocator makes single samples jump by megabytes
    growth = statistics.median(rss[half:]) - statistics.median(rss[:half])
    assert growth < RSS_GROWTH_LIMIT, str([r // 2**20 for r in rss])

    # Counted, and honestly: every counted message was really lost for the stuck subscriber.
    assert 1 <= counted <= missed, (counted, missed)
