"""A subscriber that stops reading must cost the healthy subscriber nothing: the real daemon keeps
publishing to it without a gap in seq, its memory stays bounded, and the messages the stuck one
misses are counted in /metrics."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import zmq

from tests.integration.daemon_harness import DaemonProcess, free_tcp_endpoint, write_config
from tests.integration.reliability_support import (detections, free_port, metric_sum, missing_seqs, rss_bytes,
                                                   scrape_metrics, tiny_model_section)
from tests.support.media import make_clip

CAMERAS = ("north", "south", "east", "west")
FPS = 50
HWM = 100
RSS_WINDOW_S = 8.0
RSS_GROWTH_LIMIT = 8 * 2**20  # what the daemon may grow while a subscriber is stuck


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # score_threshold 0: every anchor is a detection, so messages are big (~6 KB) and a stuck
    # subscriber's buffers fill within seconds.
    return tiny_model_section(tmp_path_factory.mktemp("model"), score_threshold=0.0)


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
    """Read the backlog until a message published after we started reading arrives."""
    started, out = time.time(), []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and sock.poll(1000):
        _topic, body = sock.recv_multipart()
        out.append(json.loads(body))
        if out[-1]["published_at"] > started:
            return out
    raise AssertionError(f"the stuck subscriber did not catch up ({len(out)} messages read)")


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
            # The stuck subscriber's queues are full from here on: memory must stay flat.
            rss = [rss_bytes(d.proc.pid)]
            dropped_before = dropped()
            for _ in range(int(RSS_WINDOW_S / 0.5)):
                d.pump(0.5)
                rss.append(rss_bytes(d.proc.pid))
            dropped_during = dropped() - dropped_before
            counted_before_drain = dropped()
            got = catch_up(stuck)  # it reads again: what did it miss?
            d.pump(0.5)
            counted_after_drain = dropped()
            d.terminate()
            run = d.finish(timeout=10)
    finally:
        stuck.close()
        context.term()
    assert run.returncode == 0, run.stderr

    healthy_total = 0
    for cid in CAMERAS:
        dets = detections(run.messages, cid)
        assert dets[0]["seq"] == 0 and missing_seqs(dets) == 0, cid  # the healthy subscriber lost nothing
        healthy_total += len(dets)
    assert healthy_total > 2 * counted_after_drain  # most messages still reached the healthy one

    # Bounded memory, and the bound is meaningful: what the stuck subscriber missed meanwhile is
    # several times what the daemon may grow, so queueing it would have shown.
    message_bytes = sum(len(json.dumps(m)) for m in detections(run.messages, CAMERAS[0])) / len(
        detections(run.messages, CAMERAS[0]))
    assert dropped_during * message_bytes > 3 * RSS_GROWTH_LIMIT, (dropped_during, message_bytes)
    assert max(rss) - rss[0] < RSS_GROWTH_LIMIT, [r // 2**20 for r in rss]

    # The count is honest: the stuck subscriber's seq gaps are the messages counted as dropped.
    missed = sum(missing_seqs([m for m in got if m["camera"] == cid]) for cid in CAMERAS)
    assert got and missed > 0
    assert counted_before_drain <= missed <= counted_after_drain, (counted_before_drain, missed, counted_after_drain)
