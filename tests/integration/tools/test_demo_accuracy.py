"""The demo detector finds real objects in real encoded video through the whole pipeline.

Held-out clips (seeds never used in training, see docs/model-card.md) run through the real daemon
(subprocess, three cameras batched together) and a real ZeroMQ subscriber; the published detections
are scored against the exact ground truth the clip generator wrote.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import onnxruntime as ort
import pytest
import yaml

from pipeline.tools.evaluate.detection_metrics import iou_matrix, load_truth, score_camera
from pipeline.preprocess.reference import letterbox_reference
from tests.support.daemon_harness import REPO, run_daemon, write_config

DEMO = REPO / "assets" / "demo"
CLIPS = {"street": "street_1280x720", "plaza": "plaza_768x576", "yard": "yard_640x480"}


def demo_model_section() -> dict:
    model = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["model"]
    model["path"] = str(DEMO / "detector.onnx")
    model["labels"] = str(DEMO / "labels.txt")
    return model


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("demo")
    cams = [{"id": cid, "url": str(DEMO / f"{stem}.mp4"), "realtime": False} for cid, stem in CLIPS.items()]
    cfg = write_config(tmp / "cfg.yaml", cams, demo_model_section(),
                       scheduler={"max_batch": 8, "max_wait_ms": 50, "queue_per_camera": 4})
    run = run_daemon(cfg, timeout=300)
    assert run.returncode == 0, run.stderr
    return run


@pytest.mark.parametrize("camera", list(CLIPS))
def test_precision_and_recall_on_held_out_clips(demo_run, camera: str) -> None:
    truth = load_truth(DEMO / f"{CLIPS[camera]}.jsonl")
    messages = demo_run.detections(camera)
    assert [m["frame"] for m in messages] == sorted(truth), "every frame must be published once"
    score = score_camera(camera, truth, messages, iou_threshold=0.5)
    print(score.line())
    assert score.precision >= 0.9, score.line()
    assert score.recall >= 0.9, score.line()


def test_cameras_shared_batches(demo_run) -> None:
    summary = [ln for ln in demo_run.stderr.splitlines() if "summary batches" in ln][-1]
    assert float(summary.rsplit("mean batch ", 1)[1].split()[0]) > 1.5, summary


def decode_frame(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"{path} has no frame {index}")


def direct_detections(image: np.ndarray, model: dict, session: ort.InferenceSession) -> tuple[np.ndarray, np.ndarray]:
    """Independent of pipeline/postprocess: plain ORT + greedy NMS + inverse letterbox written out here."""
    tensor, t = letterbox_reference(image, model["input_size"])
    out = session.run(None, {session.get_inputs()[0].name: tensor[None]})[0][0]  # [4+C, N]
    boxes_cxcywh, scores = out[:4].T, out[4:].T
    cls = scores.argmax(1)
    best = scores.max(1)
    keep = best > model["score_threshold"]
    b, s, c = boxes_cxcywh[keep], best[keep], cls[keep]
    xyxy = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)
    chosen = []
    for i in np.argsort(-s):
        if all(c[j] != c[i] or iou_matrix(xyxy[i:i + 1], xyxy[j:j + 1])[0, 0] <= model["iou_threshold"]
               for j in chosen):
            chosen.append(i)
    xyxy, s = xyxy[chosen], s[chosen]
    # model pixels -> source pixels: undo the centring pad, then the per-axis resize
    h, w = image.shape[:2]
    xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - t.pad_x) * w / t.resized_width).clip(0, w)
    xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - t.pad_y) * h / t.resized_height).clip(0, h)
    return xyxy, s


@pytest.mark.parametrize("camera,frame", [("street", 60), ("street", 181), ("plaza", 100), ("plaza", 7)])
def test_pipeline_boxes_equal_direct_onnxruntime(demo_run, camera: str, frame: int) -> None:
    """Letterbox (DALI) and box mapping are right at 1280x720 and at the odd 768x576."""
    model = demo_model_section()
    session = ort.InferenceSession(model["path"], providers=["CPUExecutionProvider"])
    image = decode_frame(DEMO / f"{CLIPS[camera]}.mp4", frame)
    want_boxes, want_scores = direct_detections(image, model, session)
    msg = next(m for m in demo_run.detections(camera) if m["frame"] == frame)
    assert (msg["width"], msg["height"]) == (image.shape[1], image.shape[0])
    got = np.array([d["box"] for d in msg["detections"]], dtype=np.float64).reshape(-1, 4)
    assert len(want_boxes) > 0, "the frame should contain objects"
    # same objects (scores near the threshold may flip between DALI's and OpenCV's resize: allow that)
    confident = want_scores > model["score_threshold"] + 0.1
    ious = iou_matrix(want_boxes[confident], got)
    assert ious.shape[1] > 0 and (ious.max(1) > 0.95).all(), (want_boxes, got)
    for i, j in enumerate(ious.argmax(1)):
        assert np.abs(want_boxes[confident][i] - got[j]).max() <= 3.0, (want_boxes[confident][i], got[j])


def test_eval_command_reports_per_camera_scores(tmp_path: Path) -> None:
    cams = [{"id": "yard", "url": str(DEMO / "yard_640x480.mp4")}]
    cfg = write_config(tmp_path / "cfg.yaml", cams, demo_model_section())
    out_json = tmp_path / "scores.json"
    res = subprocess.run([sys.executable, "-m", "pipeline", "eval", str(cfg),
                          "--truth", f"yard={DEMO / 'yard_640x480.jsonl'}", "--json", str(out_json)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("yard: precision ")
    scores = json.loads(out_json.read_text())
    assert scores[0]["camera"] == "yard" and scores[0]["frames_scored"] == 160
    assert scores[0]["precision"] >= 0.9 and scores[0]["recall"] >= 0.9 and scores[0]["map50"] >= 0.85
