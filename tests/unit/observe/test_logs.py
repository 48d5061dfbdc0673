"""Logging: one line per event (plain and JSON), credentials redacted everywhere, repeats limited."""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from typing import Iterator

import pytest

from pipeline.observe.logs import (NOT_RATE_LIMITED, CredentialRedactor, JsonFormatter, PlainFormatter, RepeatLimiter,
                           configure_logging, redact_credentials)
from tests.support.daemon_harness import REPO


class Capture:
    """A real handler chain like configure_logging builds, writing into a buffer, on a fake clock."""

    def __init__(self, fmt: logging.Formatter, per_window: int = 3, window_s: float = 60.0) -> None:
        self.now = 0.0
        self.buffer = io.StringIO()
        self.handler = logging.StreamHandler(self.buffer)
        self.handler.setFormatter(fmt)
        self.limiter = RepeatLimiter(self.handler.handle, per_window, window_s, clock=lambda: self.now)
        self.handler.addFilter(self.limiter)
        self.handler.addFilter(CredentialRedactor())
        self.logger = logging.getLogger(f"test.logs.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self.handler)

    def lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()


@pytest.fixture
def plain() -> Iterator[Capture]:
    cap = Capture(PlainFormatter())
    yield cap
    cap.logger.removeHandler(cap.handler)


def test_redact_credentials_finds_urls_anywhere() -> None:
    text = "error opening rtsp://admin:s3cr3t@10.0.0.5:554/h264 (retry http://u:p%40ss@cam/x) ok"
    assert redact_credentials(text) == \
        "error opening rtsp://admin:***@10.0.0.5:554/h264 (retry http://u:***@cam/x) ok"
    assert redact_credentials("rtsp://10.0.0.5/stream and file:///tmp/x") == "rtsp://10.0.0.5/stream and file:///tmp/x"


def test_every_record_is_redacted_even_a_library_one_and_its_traceback(plain: Capture) -> None:
    lib = logging.getLogger("libav.fake")  # not ours: the handler filter still applies
    lib.propagate = False
    lib.addHandler(plain.handler)
    try:
        lib.error("cannot open %s", "rtsp://viewer:hunter2@10.1.1.1/live")
        try:
            raise ConnectionError("connect rtsp://viewer:hunter2@10.1.1.1/live: refused")
        except ConnectionError:
            lib.exception("reader failed")
    finally:
        lib.removeHandler(plain.handler)
    out = plain.buffer.getvalue()
    assert "hunter2" not in out
    assert "rtsp://viewer:***@10.1.1.1/live" in out
    lines = plain.lines()
    assert len(lines) == 2, lines  # the traceback is folded into its record's line
    assert "Traceback" in lines[1] and "ConnectionError" in lines[1]


def test_plain_and_json_lines() -> None:
    cap = Capture(JsonFormatter())
    cap.logger.warning("camera %s: %s", "lobby", "reconnecting\n(timeout)")
    (line,) = cap.lines()
    doc = json.loads(line)
    assert doc["level"] == "WARNING" and doc["logger"] == cap.logger.name
    assert doc["message"] == "camera lobby: reconnecting\n(timeout)"
    assert doc["time"].endswith("Z") and "T" in doc["time"]
    cap2 = Capture(PlainFormatter())
    cap2.logger.info("a\nb")
    (line,) = cap2.lines()
    assert line.endswith(f"INFO {cap2.logger.name}: a | b")


def test_a_flapping_camera_is_limited_then_summarized(plain: Capture) -> None:
    for i in range(20):
        plain.logger.info("camera %s: %s%s", "gate", "reconnecting", f" (attempt {i})")
        plain.logger.info("camera %s: %s%s", "lobby", "up", "")  # another camera: its own budget
        plain.now += 1.0
    lines = plain.lines()
    assert sum("camera gate" in ln for ln in lines) == 3
    assert sum("camera lobby" in ln for ln in lines) == 3
    assert not any("suppressed" in ln for ln in lines)
    plain.now = 61.0  # the windows end; the next record reports what was held back
    plain.logger.info("camera %s: %s%s", "gate", "reconnecting", " (attempt 20)")
    lines = plain.lines()[6:]
    assert len(lines) == 3, lines
    assert "suppressed 17 similar messages in 60s like: camera gate: reconnecting (attempt 0)" in lines[0]
    assert "suppressed 17 similar messages in 60s like: camera lobby: up" in lines[1]  # by the sweep
    assert lines[2].endswith("camera gate: reconnecting (attempt 20)")


def test_flush_reports_pending_suppressions(plain: Capture) -> None:
    for _ in range(5):
        plain.logger.warning("camera %s: frame %d dropped by preprocess: %s", "a", 7, "bad size")
    assert len(plain.lines()) == 3
    plain.limiter.flush()  # at shutdown, before the window ended
    assert "suppressed 2 similar messages" in plain.lines()[-1] and "WARNING" in plain.lines()[-1]


def test_ended_windows_are_reported_by_the_sweep_without_another_record_of_their_kind(plain: Capture) -> None:
    for _ in range(5):
        plain.logger.error("inference failed for a batch of %d: %s", 4, "CUDA error")
    plain.now = 100.0
    plain.logger.info("something else")
    assert any("suppressed 2 similar messages" in ln and "inference failed" in ln for ln in plain.lines())


def test_periodic_reports_are_not_limited(plain: Capture) -> None:
    for _ in range(10):
        plain.logger.info("status %s", "a: up  decode 25.0 fps", extra=NOT_RATE_LIMITED)
    assert len(plain.lines()) == 10


def test_configure_logging_writes_json_to_stderr_from_the_cli() -> None:
    code = ("import logging; from pipeline.observe.logs import configure_logging; configure_logging('INFO', 'json');"
            "logging.getLogger('x').warning('open %s', 'rtsp://u:pw@h/s')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    doc = json.loads(out.stderr)
    assert doc["message"] == "open rtsp://u:***@h/s" and doc["logger"] == "x" and out.stdout == ""
    with pytest.raises(ValueError):
        configure_logging("INFO", "xml")
