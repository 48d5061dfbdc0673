"""`${secret:NAME}` reads $CREDENTIALS_DIRECTORY/NAME (systemd LoadCredential=); errors name file:line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import ConfigError, parse_config
from tests.support.daemon_harness import REPO
from tests.support.tiny_model import build_tiny_yolo_onnx

CONFIG = """\
cameras:
  - id: lobby
    url: rtsp://viewer:${secret:lobby_password}@10.0.0.21/stream1
  - id: gate
    url: rtsp://${CAM_USER}:${secret:gate.pw}@10.0.0.22/stream1
model: {path: m.onnx, labels: [person]}
"""


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    d = tmp_path / "credentials"
    d.mkdir()
    (d / "lobby_password").write_text("s3cr3t\n")  # systemd passes the file as written: newline included
    (d / "gate.pw").write_text("p@ss:word")
    return d


def test_secrets_are_read_and_their_trailing_newline_stripped(creds: Path) -> None:
    cfg = parse_config(CONFIG, "cfg.yaml", env={"CREDENTIALS_DIRECTORY": str(creds), "CAM_USER": "ops"},
                       check_files=False)
    assert cfg.cameras[0].url == "rtsp://viewer:s3cr3t@10.0.0.21/stream1"
    assert cfg.cameras[1].url == "rtsp://ops:p@ss:word@10.0.0.22/stream1"


def test_credentials_directory_reference_still_works(creds: Path) -> None:
    text = "cameras: [{id: a, url: 'synthetic:64x64@5'}]\nmodel: {path: m.onnx, labels: [x]}\n" \
           "publish:\n  curve:\n    server_secret_key_file: ${CREDENTIALS_DIRECTORY}/server.key_secret\n" \
           "    authorized_clients_dir: clients\n"
    cfg = parse_config(text, "cfg.yaml", base=Path("/etc/pipeline"), env={"CREDENTIALS_DIRECTORY": str(creds)},
                       check_files=False)
    assert cfg.publish.curve is not None
    assert cfg.publish.curve.server_secret_key_file == creds / "server.key_secret"
    assert cfg.publish.curve.authorized_clients_dir == Path("/etc/pipeline/clients")


def test_a_missing_secret_names_file_line_and_credential(creds: Path) -> None:
    (creds / "gate.pw").unlink()
    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG, "cfg.yaml", env={"CREDENTIALS_DIRECTORY": str(creds), "CAM_USER": "ops"},
                     check_files=False)
    msg = str(err.value)
    assert msg.startswith("cfg.yaml:5: cameras[1].url: ${secret:gate.pw}: no credential 'gate.pw' in ")
    assert "\n" not in msg and "s3cr3t" not in msg


def test_secret_without_credentials_directory_says_what_sets_it() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG, "cfg.yaml", env={"CAM_USER": "ops"}, check_files=False)
    assert str(err.value) == ("cfg.yaml:3: cameras[0].url: ${secret:lobby_password} needs $CREDENTIALS_DIRECTORY "
                              "(systemd sets it for LoadCredential=)")


@pytest.mark.parametrize("name", ["../etc/shadow", "a/b", ""])
def test_secret_names_cannot_leave_the_credentials_directory(creds: Path, name: str) -> None:
    text = f"cameras: [{{id: a, url: 'rtsp://u:${{secret:{name}}}@h/s'}}]\nmodel: {{path: m.onnx, labels: [x]}}\n"
    with pytest.raises(ConfigError, match=r"^cfg.yaml:1: cameras\[0\].url: .*a credential name is"):
        parse_config(text, "cfg.yaml", env={"CREDENTIALS_DIRECTORY": str(creds)}, check_files=False)


def test_check_never_prints_the_secret(tmp_path: Path, creds: Path) -> None:
    build_tiny_yolo_onnx(tmp_path / "m.onnx", num_classes=1)  # check also resolves the model
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG)
    out = subprocess.run([sys.executable, "-m", "pipeline", "check", str(cfg)], cwd=REPO, capture_output=True,
                         text=True, timeout=60,
                         env={"CREDENTIALS_DIRECTORY": str(creds), "CAM_USER": "ops", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "rtsp://viewer:***@10.0.0.21/stream1" in out.stdout
    assert "s3cr3t" not in out.stdout + out.stderr and "ss:word" not in out.stdout + out.stderr
