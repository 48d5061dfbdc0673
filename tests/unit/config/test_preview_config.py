"""preview: off by default, loopback by default, a token required anywhere else; one-line errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config

BASE = """\
cameras:
  - {id: a, url: "synthetic:"}
model: {path: m.onnx, labels: [person, car]}
"""


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    (tmp_path / "m.onnx").write_bytes(b"x")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(BASE + text)
    return load_config(cfg, env=env or {})


def test_preview_is_off_unless_configured(tmp_path: Path) -> None:
    assert _load(tmp_path, "").preview is None


def test_defaults_and_snapshot_dir_relative_to_the_config(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "preview: {snapshots: {dir: snaps, classes: [person]}}\n").preview
    assert cfg.bind == "127.0.0.1:8080" and cfg.fps == 2 and cfg.token is None
    assert cfg.snapshots.dir == tmp_path / "snaps"


def test_non_loopback_bind_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "preview:\n  bind: 0.0.0.0:8080\n")
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'cfg.yaml'}:4: preview: ") and "set preview.token" in msg
    assert "\n" not in msg


def test_token_from_a_systemd_credential(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "preview_token").write_text("0123456789abcdef-token\n")
    cfg = _load(tmp_path, "preview: {bind: '0.0.0.0:8080', token: '${secret:preview_token}'}\n",
                env={"CREDENTIALS_DIRECTORY": str(creds)}).preview
    assert cfg.token.get_secret_value() == "0123456789abcdef-token"
    assert "0123456789abcdef" not in repr(cfg) and "0123456789abcdef" not in str(cfg.model_dump(mode="json"))


@pytest.mark.parametrize("text, where", [
    ("preview: {fps: 0}\n", "preview.fps"),
    ("preview: {bind: 'nohostport'}\n", "preview.bind"),
    ("preview: {max_clients: 0}\n", "preview.max_clients"),
    ("preview: {snapshots: {dir: s, events: [explode]}}\n", "preview.snapshots.events"),
    ("preview: {snapshots: {dir: s, max_files: 0}}\n", "preview.snapshots.max_files"),
    ("preview: {colour: red}\n", "preview.colour"),
    ("preview: {token: short}\n", "preview.token"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=rf"cfg.yaml:4: {where}"):
        _load(tmp_path, text)
