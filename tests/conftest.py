"""Shared fixtures: real media clips and real RTSP servers."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.support.media import make_clip as _make_clip
from tests.support.rtsp_server import RtspServer, rtsp_server_unavailable


@pytest.fixture
def make_clip(tmp_path: Path) -> Callable[..., Path]:
    """make_clip(name="clip.mp4", width=160, height=120, frames=30, fps=30, codec="h264") -> Path
    of a fresh H.264 (etc.) clip with moving shapes in tmp_path."""

    def make(name: str = "clip.mp4", width: int = 160, height: int = 120, frames: int = 30,
             fps: int = 30, codec: str = "h264") -> Path:
        return _make_clip(tmp_path / name, width, height, frames, fps, codec)

    return make


@functools.lru_cache(maxsize=1)
def _rtsp_unavailable_reason() -> str | None:
    return rtsp_server_unavailable()


@pytest.fixture
def rtsp_server() -> Iterator[Callable[..., RtspServer]]:
    """rtsp_server(mount="/stream", width=320, height=240, fps=25, shared=False, credentials=None)
    -> a started RtspServer; every server is killed at teardown. Skips if GStreamer is missing."""
    reason = _rtsp_unavailable_reason()
    if reason:
        pytest.skip(f"no RTSP server: {reason}")
    servers: list[RtspServer] = []

    def start(**kwargs: object) -> RtspServer:
        server = RtspServer(**kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(autouse=True)
def _restore_logging_handlers() -> Iterator[None]:
    """Commands run in-process (pipeline.cli.main) configure logging onto the sys.stderr of their
    test, which pytest closes afterwards; a later test's log records must not go to that stream."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_unconfigure(config: pytest.Config) -> None:
    """In-process tests leave network readers that leave FFmpeg by themselves within their camera's
    timeout_s; the test process must not finalize while one is inside (pipeline/sources/readers.py)."""
    from pipeline.sources.readers import readers_alive

    readers_alive(wait_s=READERS_AT_EXIT_S)


READERS_AT_EXIT_S = 10.0  # longer than any test camera's timeout_s
