"""Source registry, create_source and URL redaction."""
from __future__ import annotations

import threading

import pytest

from pipeline.config import CameraConfig, DecodeConfig
from pipeline.frame import CameraState
from pipeline.observe.metrics import Metrics
from pipeline.sources import (FileSource, NetworkSource, SyntheticSource, create_source, redact_text,
                              redact_url)
from pipeline.sources.base import Ending, Source, register_source


@pytest.mark.parametrize("url, expected", [
    ("rtsp://user:pass@host/stream", "rtsp://user:***@host/stream"),
    ("rtsp://admin:p%40ss@10.0.0.5:554/Streaming/101", "rtsp://admin:***@10.0.0.5:554/Streaming/101"),
    ("rtsp://admin:p@ss:w0rd@cam.local/live", "rtsp://admin:***@cam.local/live"),
    ("http://a@b.example:pw@host:8080/x.m3u8?q=1", "http://a@b.example:***@host:8080/x.m3u8?q=1"),
    ("RTSPS://u:secret@h", "RTSPS://u:***@h"),
    ("rtsp://user@host/stream", "rtsp://user@host/stream"),
    ("rtsp://host:554/stream", "rtsp://host:554/stream"),
    ("rtsp://host:554/a@b", "rtsp://host:554/a@b"),
    ("/videos/a:b@c.mp4", "/videos/a:b@c.mp4"),
    ("synthetic:64x48@25", "synthetic:64x48@25"),
])
def test_redact_url_hides_only_the_password(url, expected):
    assert redact_url(url) == expected


def test_redact_text_scrubs_the_password_in_any_form():
    url = "rtsp://admin:p%40ss@cam/x"
    text = f"[Errno 111] Connection refused: '{url}' (password p@ss, raw p%40ss)"
    scrubbed = redact_text(text, url)
    assert "p@ss" not in scrubbed and "p%40ss" not in scrubbed
    assert "rtsp://admin:***@cam/x" in scrubbed


@pytest.mark.parametrize("url, cls", [
    ("/data/a.mp4", FileSource),
    ("rtsp://cam/x", NetworkSource),
    ("https://host/live.m3u8", NetworkSource),
    ("synthetic:64x48@25", SyntheticSource),
])
def test_create_source_picks_the_class_by_resolved_type(url, cls):
    cam = CameraConfig(id="c", url=url)
    source = create_source(cam, DecodeConfig(), lambda f: None, lambda e: None, threading.Event(), Metrics())
    assert type(source) is cls and source.type_key == cam.type and source.state is None


def test_registering_a_second_class_for_a_type_fails():
    class OtherFile(Source):
        type_key = "file"

        def _stream(self) -> Ending:
            return Ending(CameraState.EOF, "")

    with pytest.raises(ValueError, match="already registered by FileSource"):
        register_source(OtherFile)


def test_a_failing_status_consumer_does_not_break_the_source():
    def broken_status(event):
        raise RuntimeError("publisher gone")

    frames = []
    stop = threading.Event()
    cam = CameraConfig(id="c", url="synthetic:16x16@100", realtime=False)

    def sink(frame):
        frames.append(frame)
        if len(frames) == 3:
            stop.set()

    source = create_source(cam, DecodeConfig(), sink, broken_status, stop, Metrics())
    source.run()  # returns, does not raise
    assert len(frames) == 3 and source.state is CameraState.STOPPED
