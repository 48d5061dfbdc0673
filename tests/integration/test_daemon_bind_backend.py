"""The daemon's infer thread prepares the backend before the batch thread and any camera start:
ONNX Runtime records its CUDA graphs per thread, and recording fails while another thread uses the
GPU (pipeline/infer/ort_gpu.py). Checked with the real CPU backend, its bind_to_thread wrapped only
to record where and when it ran."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.config import parse_config
from pipeline.daemon import Daemon, DaemonOptions
from pipeline.infer.onnxruntime import OnnxRuntimeBackend
from tests.integration.daemon_harness import free_tcp_endpoint
from tests.support.tiny_model import build_tiny_yolo_onnx


def test_the_infer_thread_binds_the_backend_before_cameras_start(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=1, input_size=64)
    seen: list[tuple[str, list[str]]] = []
    bind = OnnxRuntimeBackend.bind_to_thread

    def recording_bind(self: OnnxRuntimeBackend) -> None:
        others = sorted(t.name for t in threading.enumerate() if t.name.startswith(("camera-", "batch")))
        seen.append((threading.current_thread().name, others))
        bind(self)

    monkeypatch.setattr(OnnxRuntimeBackend, "bind_to_thread", recording_bind)
    cfg = parse_config(
        "cameras:\n  - {id: a, url: 'synthetic:64x48@30'}\n  - {id: b, url: 'synthetic:64x48@30'}\n"
        f"model: {{path: '{model}', labels: [x], input_size: 64}}\n"
        f"publish: {{bind: '{free_tcp_endpoint()}'}}\nmetrics: {{bind: null}}\n", base=tmp_path)
    daemon = Daemon(cfg, DaemonOptions(status_interval_s=0))
    daemon.start()
    try:
        running = {t.name for t in threading.enumerate()}
    finally:
        daemon.shutdown()
    assert seen == [("infer", [])]  # once, on the infer thread, with no camera or batch thread yet
    assert {"camera-a", "camera-b", "batch"} <= running  # and those started afterwards
