"""The daemon keeps its startup objects out of the garbage collector's passes while it runs, hands
them back at shutdown, and times every collection into pipeline_gc_pause_seconds
(pipeline/app/interpreter.py). A real daemon with synthetic cameras and the tiny ONNX model."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.app.daemon import Daemon, DaemonOptions
from pipeline.config import parse_config
from tests.support.daemon_harness import REPO, free_tcp_endpoint
from tests.support.tiny_model import build_tiny_yolo_onnx


def _daemon(tmp_path: Path) -> Daemon:
    model = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=1, input_size=64)
    cfg = parse_config(
        "cameras:\n  - {id: a, url: 'synthetic:64x48@30'}\n"
        f"model: {{path: '{model}', labels: [x], input_size: 64}}\n"
        f"publish: {{bind: '{free_tcp_endpoint()}'}}\nmetrics: {{bind: null}}\n", base=tmp_path)
    return Daemon(cfg, DaemonOptions(status_interval_s=0))


def test_startup_objects_frozen_while_running_and_collections_timed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPELINE_GC", raising=False)
    assert gc.get_freeze_count() == 0
    daemon = _daemon(tmp_path)
    daemon.start()
    try:
        assert gc.get_freeze_count() > 1000  # the modules, the model, the runtime
        gc.collect(0)
        gc.collect(2)
    finally:
        daemon.shutdown()
    assert gc.get_freeze_count() == 0
    assert daemon.metrics.value("pipeline_gc_pause_seconds_count", generation="0") >= 1
    assert daemon.metrics.value("pipeline_gc_pause_seconds_count", generation="2") >= 1
    count = daemon.metrics.value("pipeline_gc_pause_seconds_count", generation="2")
    gc.collect(2)  # after shutdown: no longer timed
    assert daemon.metrics.value("pipeline_gc_pause_seconds_count", generation="2") == count


def test_python_gc_mode_freezes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_GC", "python")
    daemon = _daemon(tmp_path)
    daemon.start()
    try:
        assert gc.get_freeze_count() == 0
    finally:
        daemon.shutdown()


def test_run_refuses_a_bad_gc_mode_in_one_line() -> None:
    out = subprocess.run([sys.executable, "-m", "pipeline", "run", "configs/demo.yaml"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PIPELINE_GC": "off"})
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "pipeline: cannot start: PIPELINE_GC='off': expected one of freeze, python")
