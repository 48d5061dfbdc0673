"""How fast a network camera notices trouble and comes back, against a real GStreamer RTSP server."""
from __future__ import annotations

import time
from typing import Iterator

import pytest

from pipeline.config import CameraConfig
from pipeline.frame import CameraState
from tests.support.source_runner import SourceRunner


@pytest.fixture
def runners() -> Iterator[list[SourceRunner]]:
    started: list[SourceRunner] = []
    yield started
    for runner in started:
        runner.stop.set()
        runner.thread.join(2)


def test_a_restarted_server_is_reconnected_at_once_not_after_the_backoff(rtsp_server, runners):
    server = rtsp_server(width=160, height=120, fps=25)
    runner = SourceRunner(CameraConfig(id="cam", url=server.url, timeout_s=2), keep_images=False).start()
    runners.append(runner)
    runner.wait_for_frames(5, timeout_s=8)

    server.kill()
    # Refused, refused, refused: the backoff has grown to 4 s.
    runner.wait_until(lambda: any(e.reason.endswith("retry in 4 s") for e in runner.events), 8)
    long_wait = next(e for e in runner.events if e.reason.endswith("retry in 4 s"))
    assert long_wait.reason == "cannot connect: Connection refused; retry in 4 s"
    seen = len(runner.frames)
    server.start()
    back_at = time.time()
    runner.wait_for_frames(seen + 1, timeout_s=4)
    first = runner.frames[seen]
    # The port watch noticed the server: frames well before the backoff's next attempt would be.
    assert first.captured_at < long_wait.at + 4.0, (first.captured_at - long_wait.at)
    assert first.captured_at - back_at < 2.5
    assert runner.source.state is CameraState.UP


def test_a_stall_is_reported_after_one_timeout_not_two(rtsp_server, runners):
    server = rtsp_server(width=160, height=120, fps=25)
    runner = SourceRunner(CameraConfig(id="cam", url=server.url, timeout_s=1.0), keep_images=False).start()
    runners.append(runner)
    runner.wait_for_frames(10, timeout_s=8)
    before = len(runner.events)
    paused_at = time.time()
    server.pause()  # nothing flows; the TCP connection stays open
    stalled = runner.wait_for_state(CameraState.RECONNECTING, timeout_s=4, after=before)
    assert stalled.reason == "stalled: no data for 1 s; retry in 0.5 s"
    # FFmpeg's H.264 parser only hands out the last picture when a read fails: that picture is
    # delivered, and the stall reported with it instead of after a second read timeout.
    assert 0.9 <= stalled.at - paused_at < 1.6, stalled.at - paused_at
    server.resume()
