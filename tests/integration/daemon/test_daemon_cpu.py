"""The whole daemon as a subprocess on real encoded video, a real RTSP server and real footage,
with a real ZeroMQ subscriber. The model is the tiny real ONNX model from tests/support."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from pipeline.publish.messages import load_schema
from tests.support.daemon_harness import REPO, DaemonProcess, run_daemon, write_config
from tests.support.media import make_clip
from tests.support.rtsp_server import RtspServer, require_rtsp_server
from tests.support.tiny_model import build_tiny_yolo_onnx

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
LABELS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = build_tiny_yolo_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", num_classes=3, input_size=64)
    return {"path": str(path), "labels": LABELS, "input_size": 64, "score_threshold": 0.6}


def validate_all(messages: list[tuple[str, dict]]) -> None:
    det_schema, status_schema = load_schema("detections"), load_schema("status")
    for topic, msg in messages:
        schema = det_schema if topic.startswith("det/") else status_schema
        jsonschema.validate(msg, schema)
        assert topic.split("/")[1] == msg["camera"]
        for d in msg.get("detections", []):
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= msg["width"] and 0 <= y1 < y2 <= msg["height"], (msg["camera"], d)


def assert_contiguous(dets: list[dict], frames: int | None = None) -> None:
    assert [m["seq"] for m in dets] == list(range(len(dets)))
    if frames is not None:
        assert [m["frame"] for m in dets] == list(range(frames))


def test_three_file_cameras_every_frame_published_in_shared_batches(tmp_path: Path, tiny_model: dict) -> None:
    sizes = {"cam1": (320, 240, 40), "cam10": (256, 144, 50), "odd": (200, 150, 30)}
    cams = [{"id": cid, "url": str(make_clip(tmp_path / f"{cid}.mp4", w, h, n, fps=25)), "realtime": False}
            for cid, (w, h, n) in sizes.items()]
    cfg = write_config(tmp_path / "cfg.yaml", cams, tiny_model,
                       scheduler={"max_batch": 8, "max_wait_ms": 50, "queue_per_camera": 4})
    run = run_daemon(cfg)
    assert run.returncode == 0, run.stderr
    validate_all(run.messages)
    for cid, (w, h, n) in sizes.items():
        dets = run.detections(cid)
        assert_contiguous(dets, frames=n)  # files read with backpressure: no frame lost
        assert {(m["width"], m["height"]) for m in dets} == {(w, h)}
        states = [m["state"] for m in run.statuses(cid)]
        assert states[0] == "starting" and "up" in states and states[-1] == "eof", states
    # the moving coloured rectangles of the clip are found by the tiny model
    assert sum(len(m["detections"]) for m in run.detections()) > 0
    summary = [ln for ln in run.stderr.splitlines() if "summary batches" in ln]
    assert summary, run.stderr
    mean_batch = float(summary[-1].rsplit("mean batch ", 1)[1].split()[0])
    assert mean_batch > 1.5, summary  # frames of several cameras went through the model together


def test_rtsp_camera_alongside_a_file_camera_then_sigterm(tmp_path: Path, tiny_model: dict) -> None:
    require_rtsp_server()
    server = RtspServer(mount="/live", width=320, height=240, fps=25).start()
    try:
        clip = make_clip(tmp_path / "loop.mp4", 160, 120, 25, fps=25)
        cams = [{"id": "street", "url": server.url},
                {"id": "parking", "url": str(clip), "loop": True, "realtime": True}]
        cfg = write_config(tmp_path / "cfg.yaml", cams, tiny_model)
        with DaemonProcess(cfg) as d:
            enough = d.pump_until(lambda ms: all(
                sum(1 for t, m in ms if t == f"det/{c}/") >= 30 for c in ("street", "parking")), timeout=60)
            assert enough, d.stderr_path.read_text()
            d.terminate()
            t0 = time.monotonic()
            run = d.finish(timeout=10)
            assert time.monotonic() - t0 < 5.0, "SIGTERM must end the daemon within 5 s"
        assert run.returncode == 0, run.stderr
        validate_all(run.messages)
        for cid in ("street", "parking"):
            assert_contiguous(run.detections(cid))
            assert run.statuses(cid)[-1]["state"] == "stopped"
        frames = [m["frame"] for m in run.detections("parking")]
        assert frames == sorted(frames) and frames[-1] >= 25  # looped past the end of the 25-frame clip
    finally:
        server.terminate()


def test_real_footage_beside_a_corrupt_file(tmp_path: Path, tiny_model: dict) -> None:
    vtest, bugy = OPENCV_DATA / "vtest.avi", OPENCV_DATA / "Megamind_bugy.avi"
    assert vtest.is_file() and bugy.is_file(), "opencv-doc is part of the test setup (scripts/test.sh)"
    cams = [{"id": "vtest", "url": str(vtest), "realtime": False},
            {"id": "bugy", "url": str(bugy), "realtime": False}]
    cfg = write_config(tmp_path / "cfg.yaml", cams, tiny_model,
                       scheduler={"max_batch": 16, "max_wait_ms": 20, "queue_per_camera": 8})
    run = run_daemon(cfg, timeout=240)
    assert run.returncode == 0, run.stderr
    validate_all(run.messages)
    good = run.detections("vtest")
    assert_contiguous(good, frames=795)  # every frame of the good file, untouched by its neighbour
    assert {(m["width"], m["height"]) for m in good} == {(768, 576)}
    assert run.statuses("bugy")[-1]["state"] in ("eof", "down")


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("cameras:\n  - id: a\n    url: rtsp://h/s\n    fps: 5\nmodel: {path: m.onnx, labels: [x]}\n")
    for cmd in ("check", "run"):
        out = subprocess.run([sys.executable, "-m", "pipeline", cmd, str(cfg)], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out
        assert out.stderr.strip() == f"{cfg}:4: cameras[0].fps: unknown key 'fps'"
        assert out.stdout == ""


def test_check_prints_resolved_config_without_passwords(tmp_path: Path, tiny_model: dict) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", [{"id": "a", "url": "rtsp://viewer:${PW}@10.0.0.1/s"}], tiny_model)
    out = subprocess.run([sys.executable, "-m", "pipeline", "check", str(cfg)], cwd=REPO, capture_output=True,
                         text=True, timeout=60, env={"PW": "hunter2", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "rtsp://viewer:***@10.0.0.1/s" in out.stdout and "hunter2" not in out.stdout + out.stderr
