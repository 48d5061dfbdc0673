"""Credentials never reach logs, status messages or `check` output in clear (issue 23 item 4):
passwords with unencoded '/', '#' or '@', credentials in query strings and ${secret:...} values."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import CameraConfig
from pipeline.observe.logs import redact_credentials
from pipeline.observe.redaction import redact_text, redact_url
from tests.support.tiny_model import build_tiny_yolo_onnx

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("url, expected", [
    ("rtsp://u:p@h/x", "rtsp://u:***@h/x"),
    ("rtsp://u:pa/ss@h:554/x", "rtsp://u:***@h:554/x"),
    ("rtsp://u:pa#ss@h/x", "rtsp://u:***@h/x"),
    ("rtsp://u:p@ss@h/x", "rtsp://u:***@h/x"),
    ("http://h/x?pwd=abc&user=me", "http://h/x?pwd=***&user=me"),
    ("http://h/live.m3u8?token=T0K&x=1", "http://h/live.m3u8?token=***&x=1"),
    ("http://h/a?Password=1;api_key=2&access_token=3#key=4", "http://h/a?Password=***;api_key=***&access_token=***#key=***"),
    ("rtsp://h/x?keyframe=1&monkey=2", "rtsp://h/x?keyframe=1&monkey=2"),  # names that only contain a word
    ("http://h:8080/x", "http://h:8080/x"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_removes_raw_and_decoded_values() -> None:
    url = "rtsp://u:pa%2Fss@h/x?token=T0K"
    text = f"Error opening {url}: pa/ss rejected, token T0K, pa%2Fss"
    assert redact_text(text, url) == "Error opening rtsp://u:***@h/x?token=***: *** rejected, token ***, ***"


def test_log_redactor_catches_query_credentials_in_free_text() -> None:
    assert redact_credentials("GET http://h/s.m3u8?token=abc failed") == "GET http://h/s.m3u8?token=*** failed"


@pytest.mark.parametrize("char, encoded", [("/", "%2F"), ("#", "%23"), ("?", "%3F")])
def test_unencoded_password_characters_are_a_config_error_without_the_password(char: str, encoded: str) -> None:
    with pytest.raises(ValueError) as err:
        CameraConfig(id="a", url=f"rtsp://u:hun{char}ter2@h/x")
    message = err.value.errors()[0]["msg"]  # type: ignore[attr-defined]
    assert encoded in message and "hun" not in message


def test_a_port_and_an_at_sign_in_the_path_is_not_a_password() -> None:
    assert CameraConfig(id="a", url="http://h:8080/snap@2x.jpg").url == "http://h:8080/snap@2x.jpg"


def test_check_prints_no_secret_in_clear(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "campw").write_text("hunter2%23x\n")
    (creds / "apitoken").write_text("tok-SECRET-1\n")
    build_tiny_yolo_onnx(tmp_path / "m.onnx", num_classes=1)  # check also resolves the model
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "cameras:\n"
        "  - {id: gate, url: 'rtsp://viewer:${secret:campw}@10.0.0.2/x?token=abc123'}\n"
        "  - {id: hls, url: 'https://h/live.m3u8?access_token=${secret:apitoken}'}\n"
        "model: {path: m.onnx, labels: [x], backend: tensorrt, precision: int8,\n"
        "        calibration: {sources: [gate, 'http://h/x?key=zzz999']}}\n"
        "publish: {bind: 'tcp://127.0.0.1:5599'}\n"
        "decode: {device: cpu}\n")
    out = subprocess.run([sys.executable, "-m", "pipeline", "check", str(cfg)], cwd=REPO, capture_output=True,
                         text=True, timeout=60, env={"CREDENTIALS_DIRECTORY": str(creds), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    for secret in ("hunter2", "abc123", "tok-SECRET-1", "zzz999"):
        assert secret not in out.stdout + out.stderr, secret
    assert "rtsp://viewer:***@10.0.0.2/x?token=***" in out.stdout  # the calibration source too
    assert out.stdout.count("rtsp://viewer:***@10.0.0.2/x?token=***") == 2
