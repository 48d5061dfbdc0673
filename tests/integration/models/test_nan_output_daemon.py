"""A model that returns NaN at run time (here: for dark pictures only) costs only those frames: the
real daemon drops and counts them (reason nan_output) while the other camera, batched with it, keeps
publishing every frame."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.support.daemon_harness import run_daemon, write_config
from tests.support.bad_models import edited, nan_when_dark

FRAMES = 20
LABELS = ["a", "b"]


def constant_clip(path: Path, grey: int) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(FRAMES):
            picture = np.full((48, 64, 3), grey, np.uint8)
            picture[8:24, 8 + i:24 + i] = 255  # something to detect on the bright camera
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_nan_frames_are_dropped_and_counted_while_other_cameras_publish(tmp_path: Path) -> None:
    model = edited(tmp_path, "nan_when_dark.onnx", nan_when_dark)
    cams = [{"id": "bright", "url": str(constant_clip(tmp_path / "bright.mp4", 200)), "realtime": False},
            {"id": "dark", "url": str(constant_clip(tmp_path / "dark.mp4", 10)), "realtime": False}]
    cfg = write_config(tmp_path / "cfg.yaml", cams, {"path": str(model), "labels": LABELS, "input_size": 64,
                                                     "score_threshold": 0.5},
                       scheduler={"max_batch": 4, "max_wait_ms": 50, "queue_per_camera": 32})
    run = run_daemon(cfg, timeout=120)
    assert run.returncode == 0, run.stderr
    assert [m["frame"] for m in run.detections("bright")] == list(range(FRAMES))
    assert any(m["detections"] for m in run.detections("bright"))
    assert run.detections("dark") == []
    assert "model output has NaN for" in run.stderr and "Traceback" not in run.stderr
    assert f"dark: final state eof, decoded {FRAMES}, published 0, dropped {FRAMES}" in run.stderr, run.stderr
