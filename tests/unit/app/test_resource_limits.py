"""Open-files limit against the camera count (issue 23 item 3): `run` raises the soft limit,
`check` warns when even the hard limit is short."""
from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from pipeline.app.resource_limits import fd_limit_warning, fds_needed
from pipeline.config import parse_config
from tests.support.tiny_model import build_tiny_yolo_onnx

REPO = Path(__file__).resolve().parents[3]


def config(cameras: int):
    cams = "".join(f"  - {{id: c{i}, url: 'synthetic:32x24@1'}}\n" for i in range(cameras))
    return parse_config(f"cameras:\n{cams}model: {{path: m.onnx, labels: [x]}}\n", check_files=False)


def test_need_grows_with_cameras_and_the_warning_names_the_fix() -> None:
    small, large = config(1), config(300)
    assert fds_needed(large) - fds_needed(small) == 299 * 16
    assert fd_limit_warning(small, (1024, 1024)) is None
    warning = fd_limit_warning(large, (1024, 1024))
    assert warning is not None and "300 camera(s)" in warning and "LimitNOFILE" in warning
    assert fd_limit_warning(large, (1024, 65536)) is None  # run raises the soft limit itself
    assert fd_limit_warning(large, (1024, resource.RLIM_INFINITY)) is None


def test_check_warns_when_the_hard_limit_is_low(tmp_path: Path) -> None:
    build_tiny_yolo_onnx(tmp_path / "m.onnx", num_classes=1)  # check also resolves the model
    cams = "".join(f"  - {{id: c{i}, url: 'synthetic:32x24@1'}}\n" for i in range(100))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"cameras:\n{cams}model: {{path: m.onnx, labels: [x]}}\n")

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))

    out = subprocess.run([sys.executable, "-m", "pipeline", "check", str(cfg)], cwd=REPO, capture_output=True,
                         text=True, timeout=60, preexec_fn=low_limit)
    assert out.returncode == 0, out.stderr
    assert "# warning: open-files limit 512 (hard; soft 512) is below the ~2144 that 100 camera(s) need" in out.stderr
