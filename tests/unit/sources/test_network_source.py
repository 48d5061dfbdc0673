"""NetworkSource against a real GStreamer RTSP server process, a real HTTP server and dead ports."""
from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.config import CameraConfig
from pipeline.frame import CameraState
from pipeline.sources.network import ReconnectBackoff
from tests.support.media import make_clip, make_hls
from tests.support.source_runner import SourceRunner

SECRET = "s3cr3t-pw"


def network_camera(url: str, timeout_s: float = 2.0) -> CameraConfig:
    return CameraConfig(id="net-1", url=url, timeout_s=timeout_s)


@pytest.fixture
def runners() -> Iterator[list[SourceRunner]]:
    started: list[SourceRunner] = []
    yield started
    for runner in started:  # never leave a reader thread behind a failed test
        runner.stop.set()
        runner.thread.join(2)


def start(runners: list[SourceRunner], cam: CameraConfig) -> SourceRunner:
    runner = SourceRunner(cam).start()
    runners.append(runner)
    return runner


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_backoff_doubles_to_ten_seconds_and_resets():
    backoff = ReconnectBackoff()
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_rtsp_frames_survive_a_server_crash_and_restart(rtsp_server, runners):
    server = rtsp_server(width=320, height=240, fps=25, credentials=("admin", SECRET))
    runner = start(runners, network_camera(server.url))

    runner.wait_for_frames(5, timeout_s=8)
    assert runner.wait_for_state(CameraState.UP, 0).camera_id == "net-1"
    assert runner.frames[0].image.shape == (240, 320, 3)

    server.kill()
    before = len(runner.events)
    t0 = time.monotonic()
    lost = runner.wait_for_state(CameraState.RECONNECTING, timeout_s=2, after=before)
    assert time.monotonic() - t0 < 2
    assert "retry in" in lost.reason
    assert runner.metrics.value("pipeline_camera_up", camera="net-1") == 0

    server.start()  # same port, same URL
    seen = len(runner.frames)
    runner.wait_for_frames(seen + 5, timeout_s=6)
    runner.wait_for_state(CameraState.UP, timeout_s=1, after=before)
    assert runner.metrics.value("pipeline_camera_up", camera="net-1") == 1

    assert runner.stop_and_join(timeout_s=1.0) < 1.0
    assert runner.states()[-1] is CameraState.STOPPED
    assert [f.index for f in runner.frames] == list(range(len(runner.frames)))  # counts across reconnects
    assert runner.metrics.value("pipeline_reconnects_total", camera="net-1") >= 1
    assert all(SECRET not in e.reason for e in runner.events)
    assert any("admin:***@" in e.reason for e in runner.events)


def test_rtsp_stall_is_detected_and_stop_works_while_ffmpeg_is_blocked(rtsp_server, runners):
    server = rtsp_server(width=160, height=120, fps=25)
    runner = start(runners, network_camera(server.url, timeout_s=1.0))
    runner.wait_for_frames(3, timeout_s=8)

    server.pause()  # connection stays open, packets stop
    before = len(runner.events)
    stalled = runner.wait_for_state(CameraState.RECONNECTING, timeout_s=4, after=before)
    assert stalled.reason.startswith("stalled: no data for 1 s")

    # The reconnect now hangs inside FFmpeg (the frozen server accepts TCP but never answers).
    time.sleep(0.6)
    assert runner.stop_and_join(timeout_s=1.0) < 1.0
    assert runner.states()[-1] is CameraState.STOPPED


def test_refused_connection_reconnects_with_a_redacted_reason(runners):
    url = f"rtsp://viewer:{SECRET}@127.0.0.1:{closed_port()}/live"
    runner = start(runners, network_camera(url))

    first = runner.wait_for_state(CameraState.RECONNECTING, timeout_s=3)
    assert first.reason == "cannot connect: Connection refused; retry in 0.5 s"
    runner.wait_until(lambda: runner.states().count(CameraState.RECONNECTING) >= 2, 3)
    assert runner.events[-1].reason.endswith("retry in 1 s")  # backing off
    assert runner.stop_and_join(timeout_s=1.0) < 1.0
    assert runner.states()[0] is CameraState.STARTING and runner.states()[-1] is CameraState.STOPPED
    assert all(SECRET not in e.reason for e in runner.events)
    assert runner.events[0].reason == f"opening {url.replace(SECRET, '***')}"
    assert runner.frames == []


def test_stop_is_honoured_while_connecting_to_a_silent_server(runners):
    with socket.socket() as silent:  # accepts TCP (kernel backlog) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        runner = start(runners, network_camera(f"rtsp://127.0.0.1:{port}/x", timeout_s=30))
        runner.wait_for_state(CameraState.STARTING, timeout_s=1)
        time.sleep(0.3)  # the reader is now inside avformat_open_input
        assert runner.stop_and_join(timeout_s=1.0) < 1.0
    assert runner.states() == [CameraState.STARTING, CameraState.STOPPED]


def test_silent_server_times_out_into_reconnecting(runners):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        runner = start(runners, network_camera(f"rtsp://127.0.0.1:{port}/x", timeout_s=0.5))
        event = runner.wait_for_state(CameraState.RECONNECTING, timeout_s=3)
        assert event.reason == "cannot connect: no answer within 0.5 s; retry in 0.5 s"
        runner.stop_and_join(timeout_s=1.0)


def test_a_quick_non_rtsp_answer_is_named_not_just_invalid_data(runners):
    """An HTTP server on the RTSP port: FFmpeg fails fast with "Invalid data found", before any
    timeout; the reason must still say what answered (the camera's reachability probe asks)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        def answer_http() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        threading.Thread(target=answer_http, daemon=True).start()
        runner = start(runners, network_camera(f"rtsp://127.0.0.1:{port}/x", timeout_s=5))
        event = runner.wait_for_state(CameraState.RECONNECTING, timeout_s=4)
        runner.stop_and_join(timeout_s=1.0)
    assert event.reason == "cannot connect: the server's answer is not RTSP (starts with b'HTTP/1.1'); retry in 0.5 s"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


def _progressive_ts(folder: Path) -> str:
    make_clip(folder / "cam.ts", 128, 96, frames=20, fps=25)
    return "cam.ts"


def _hls(folder: Path) -> str:
    make_hls(folder / "hls", 128, 96, frames=20, fps=25)
    return "hls/index.m3u8"


@pytest.mark.parametrize("publish", [_progressive_ts, _hls], ids=["mpegts", "hls"])
def test_http_stream_plays_then_reconnects_when_it_ends(tmp_path: Path, runners, publish):
    path = publish(tmp_path)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{httpd.server_address[1]}/{path}"
            runner = start(runners, network_camera(url))
            ended = runner.wait_for_state(CameraState.RECONNECTING, timeout_s=5)
            assert ended.reason.startswith("stream ended")
            assert len(runner.frames) == 20 and runner.frames[0].image.shape == (96, 128, 3)
            runner.wait_for_frames(40, timeout_s=5)  # and plays again after the backoff
            assert runner.stop_and_join(timeout_s=1.0) < 1.0
        finally:
            httpd.shutdown()
