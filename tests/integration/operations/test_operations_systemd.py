"""The systemd unit passes `systemd-analyze verify` (Debian's systemd package; scripts/test.sh installs
it) and carries the settings operations rely on; scripts/install-service.sh stages a working layout."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon_harness import REPO

UNIT = REPO / "systemd" / "pipeline.service"
INSTALLER = REPO / "scripts" / "install-service.sh"


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is part of the test setup (scripts/test.sh installs Debian's systemd)")
    return path


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    # verify exits 0 on unknown keys or bad values but complains on stderr: both must be clean
    return subprocess.run([systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60)


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def fake_executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_unit_verifies_with_a_real_executable(tmp_path: Path) -> None:
    exe = fake_executable(tmp_path / "bin" / "pipeline")
    text = UNIT.read_text()
    assert "/opt/pipeline/venv/bin/pipeline" in text
    copy = tmp_path / "pipeline.service"
    copy.write_text(text.replace("/opt/pipeline/venv/bin/pipeline", str(exe)))
    out = verify(copy)
    assert out.returncode == 0 and out.stderr == "" and out.stdout == "", out


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a typo'd setting and a missing binary are both reported."""
    exe = fake_executable(tmp_path / "bin" / "pipeline")
    broken = tmp_path / "pipeline.service"
    broken.write_text(UNIT.read_text().replace("/opt/pipeline/venv/bin/pipeline", str(exe))
                      .replace("WatchdogSec=", "WatchDogSec="))
    assert "Unknown key" in verify(broken).stderr
    missing = tmp_path / "missing.service"
    missing.write_text(UNIT.read_text())  # /opt/pipeline/venv/bin/pipeline does not exist here
    assert verify(missing).returncode != 0


def test_unit_settings_operations_rely_on() -> None:
    s = unit_settings(UNIT.read_text())
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["Restart"] == "on-failure" and one["RestartPreventExitStatus"] == "2"
    assert one["WatchdogSec"] == "30s"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["ExecStart"].split()[0] == "/opt/pipeline/venv/bin/pipeline" and " run " in one["ExecStart"]
    assert one["User"] == "pipeline" and one["StateDirectory"] == "pipeline"
    for hardening in ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes",
                      "DevicePolicy=closed", "CapabilityBoundingSet="):
        key, value = hardening.split("=")
        assert one[key] == value, hardening
    assert all("nvidia" in d for d in s["DeviceAllow"])  # GPU nodes only
    assert one["LoadCredential"] == "pipeline:/etc/pipeline/credentials"


def test_installer_stages_unit_config_and_directories(tmp_path: Path) -> None:
    root, prefix = tmp_path / "root", tmp_path / "opt-pipeline"
    fake_executable(prefix / "venv" / "bin" / "pipeline")
    cmd = ["bash", str(INSTALLER), "--destdir", str(root), "--prefix", str(prefix), "--no-venv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    unit = root / "etc/systemd/system/pipeline.service"
    settings = unit_settings(unit.read_text())
    assert settings["ExecStart"][0].startswith(f"{prefix}/venv/bin/pipeline ")
    assert verify(unit).stderr == ""  # the installed unit points at the real (fake) binary
    config = root / "etc/pipeline/pipeline.yaml"
    assert config.read_text() == (REPO / "systemd/pipeline.example.yaml").read_text()
    assert (root / "etc/pipeline/credentials").stat().st_mode & 0o777 == 0o700
    assert (root / "etc/pipeline/curve-clients").is_dir()
    assert (root / str(prefix).lstrip("/") / "docs/operations.md").is_file()
    # a second run keeps the operator's config
    config.write_text("# edited\n")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and config.read_text() == "# edited\n" and "keeping" in out.stdout


def test_installer_refuses_bad_arguments(tmp_path: Path) -> None:
    out = subprocess.run(["bash", str(INSTALLER), "--destdir", str(tmp_path), "--config", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "no such file" in out.stderr
