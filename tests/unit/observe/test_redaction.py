"""URL redaction (pipeline/observe/redaction.py)."""
from __future__ import annotations

import pytest

from pipeline.observe.redaction import redact_text, redact_url


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
