"""An HLS playlist that lists itself (issue 23 item 7): FFmpeg requested it thousands of times a
second; the network camera now reads the playlist first, names the loop and backs off. A tiny
local HTTP server serves the playlists and counts the requests."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.config import CameraConfig
from pipeline.frame import CameraState
from pipeline.sources.hls_loops import playlist_loop
from tests.support.source_runner import SourceRunner

MASTER_SELF = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlive.m3u8\n"
PLAYLISTS = {
    "/live.m3u8": MASTER_SELF,
    "/a.m3u8": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nsub/b.m3u8\n",
    "/sub/b.m3u8": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\n../a.m3u8\n",
    "/good.m3u8": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nmedia.m3u8\n",
    "/media.m3u8": "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg0.ts\n#EXTINF:2.0,\nseg1.ts\n",
}


class PlaylistServer:
    def __init__(self) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests += 1
                body = PLAYLISTS.get(self.path.split("?")[0], "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/vnd.apple.mpegurl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def server():
    s = PlaylistServer()
    yield s
    s.close()


def test_a_playlist_listing_itself_is_a_loop(server: PlaylistServer) -> None:
    assert playlist_loop(f"{server.base}/live.m3u8", 2.0) == "HLS playlist loop: live.m3u8 lists live.m3u8, a playlist already read"


def test_a_loop_through_a_variant_is_found(server: PlaylistServer) -> None:
    assert playlist_loop(f"{server.base}/a.m3u8", 2.0) == "HLS playlist loop: b.m3u8 lists ../a.m3u8, a playlist already read"


def test_a_good_master_and_a_missing_playlist_are_not_loops(server: PlaylistServer) -> None:
    assert playlist_loop(f"{server.base}/good.m3u8", 2.0) is None
    assert playlist_loop(f"{server.base}/missing.m3u8", 2.0) is None
    assert server.requests == 3


def test_the_camera_reports_the_loop_and_backs_off(server: PlaylistServer) -> None:
    runner = SourceRunner(CameraConfig(id="hls", url=f"{server.base}/live.m3u8", timeout_s=3)).start()
    try:
        event = runner.wait_for_state(CameraState.RECONNECTING, timeout_s=10)
        time.sleep(2.0)
        requests = server.requests
    finally:
        runner.stop.set()
        runner.join(5)
    assert "HLS playlist loop: live.m3u8 lists live.m3u8" in event.reason
    assert requests <= 5, requests  # one read per attempt, attempts 0.5 s, 1 s, 2 s apart
