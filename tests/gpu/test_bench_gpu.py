"""`pipeline bench --stages inference,inference-under-decode` on the GPU path: the model timed alone,
then again while real-time cameras decode on NVDEC (in this process's threads, and in decode worker
processes), the CUDA graphs recorded before the cameras start."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gpu_env import skip_module_without_gpu

skip_module_without_gpu("PyNvVideoCodec", "onnxruntime")

from tests.support.daemon_harness import write_config  # noqa: E402
from tests.support.media import make_clip  # noqa: E402
from tests.support.tiny_model import build_tiny_yolo_onnx  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FPS = 25


@pytest.mark.parametrize("workers", [0, 2])
def test_inference_under_decode_runs_on_nvdec(tmp_path: Path, workers: int) -> None:
    model = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=3, input_size=64)
    clip = make_clip(tmp_path / "clip.mp4", 640, 360, 50, fps=FPS)
    cfg = write_config(tmp_path / "bench.yaml", [{"id": "cam", "url": str(clip)}],
                       {"path": str(model), "labels": ["red", "green", "blue"], "input_size": 64},
                       decode={"device": "gpu", "nvdec_output": "nv12", "workers": workers},
                       preprocess={"device": "gpu", "kernel": "fused"},
                       scheduler={"max_batch": 8, "max_wait_ms": 10})
    out = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-m", "pipeline", "bench", str(cfg), "--streams", "4", "--seconds", "2",
                          "--warmup", "0.5", "--stages", "inference,inference-under-decode", "--json", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    alone, loaded = report["stages"]["inference"], report["stages"]["inference_under_decode"]
    assert alone["error"] is None and loaded["error"] is None, (alone["error"], loaded["error"])
    assert loaded["streams"] == 4 and loaded["batch_size"] == 8 and loaded["fps"] > 0
    assert loaded["target_fps"] == pytest.approx(4 * FPS)
    # every camera decoded meanwhile, paced at the clip's rate
    assert 0 < loaded["per_camera_fps"]["min"] and loaded["per_camera_fps"]["max"] <= FPS * 1.15, loaded
    print(f"workers {workers}: inference alone {alone['fps']:.0f} frames/s, while 4 cameras decode "
          f"{loaded['fps']:.0f} ({report['summary']['inference_under_decode']['of_alone']:.2f})")
