"""The daemon with `decode: {device: gpu}` on a box where NVDEC cannot serve: every camera falls
back to CPU decoding with a warning status, and every frame is still published."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.daemon_harness import run_daemon, write_config
from tests.support.media import make_clip
from tests.support.tiny_model import build_tiny_yolo_onnx
from tests.unit.sources.test_nvdec_fallback import nvdec_works

pytestmark = pytest.mark.skipif(nvdec_works(), reason="NVDEC works here: tests/gpu runs the GPU daemon")


def test_gpu_decode_falls_back_per_camera_and_still_publishes(tmp_path: Path) -> None:
    model = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=3, input_size=64)
    cams = [{"id": "h264cam", "url": str(make_clip(tmp_path / "a.mp4", 160, 120, 20)), "realtime": False},
            {"id": "mpeg4cam", "url": str(make_clip(tmp_path / "b.avi", 160, 120, 15, codec="mpeg4")),
             "realtime": False}]
    cfg = write_config(tmp_path / "cfg.yaml", cams,
                       {"path": str(model), "labels": ["red", "green", "blue"], "input_size": 64},
                       decode={"device": "gpu"}, scheduler={"max_batch": 4, "max_wait_ms": 20})
    run = run_daemon(cfg)
    assert run.returncode == 0, run.stderr
    for cam, frames in (("h264cam", 20), ("mpeg4cam", 15)):
        assert [m["frame"] for m in run.detections(cam)] == list(range(frames))
        warnings = [m for m in run.statuses(cam) if "NVDEC unavailable" in m.get("reason", "")]
        assert len(warnings) == 1 and "decoding on the CPU" in warnings[0]["reason"], run.statuses(cam)
        assert run.statuses(cam)[-1]["state"] == "eof"
    assert "NVDEC unavailable" in run.stderr  # the warning is in the log too
