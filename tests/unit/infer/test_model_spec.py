"""model.format auto and the model's own description (pipeline/infer/model_spec.py), and bad models:
each is a one-line error naming the file at start (never a traceback), as the backend, `pipeline
check` and `pipeline run` report it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.config import ModelConfig
from pipeline.frame import Frame, InferenceResult, LetterboxTransform
from pipeline.infer import create_backend
from pipeline.infer.model_spec import ModelError, describe_model, resolve_model
from pipeline.postprocess import DetectionPostprocessor, NonFiniteOutput
from tests.support.daemon_harness import REPO, write_config
from tests.support.model_families import build_tiny_rtdetr_onnx, build_tiny_yolov5_onnx, build_tiny_yolox_onnx
from tests.support.bad_models import (
    edited,
    nan_always,
    nan_when_dark,
    too_few_rows,
    two_images,
    unchanged,
    wrong_rank,
)
from tests.support.tiny_model import build_tiny_yolo_onnx

LABELS = ["a", "b"]


def model_cfg(path: Path, **kw) -> ModelConfig:
    kw.setdefault("labels", LABELS)
    return ModelConfig(path=path, **kw)


BAD = {  # name: (edit, labels, words the one-line error must hold)
    "wrong_rank": (wrong_rank, LABELS, "output 'output0' is [batch, 1, 6, 64] (rank 4); no model.format fits"),
    "labels": (unchanged, ["a", "b", "c"], "as yolov8 it has 2 classes, but model.labels has 3"),
    "no_layout": (too_few_rows, LABELS, "output output0 [batch, 3, 64] fits no model.format for 2 classes"),
    "nan": (nan_always, LABELS, "the model outputs NaN on a plain grey picture"),
    "two_images": (two_images, LABELS, "model has 2 image inputs (images [batch, 3, 64, 64], images2 "
                                       "[batch, 3, 64, 64]); expected one image input"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_model_is_one_line_at_start(tmp_path: Path, name: str) -> None:
    edit, labels, words = BAD[name]
    path = edited(tmp_path, f"{name}.onnx", edit)
    with pytest.raises(ValueError) as err:
        create_backend(model_cfg(path, labels=labels), 4, "cpu")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and words in msg, msg


def test_run_reports_a_bad_model_in_one_line_without_traceback(tmp_path: Path, capsys) -> None:
    path = edited(tmp_path, "two.onnx", two_images)
    cfg = write_config(tmp_path / "cfg.yaml", [{"id": "a", "url": "rtsp://127.0.0.1:9/x"}],
                       {"path": str(path), "labels": LABELS})
    want = f"{path}: model has 2 image inputs (images [batch, 3, 64, 64], images2 [batch, 3, 64, 64]); " \
           f"expected one image input"
    out = subprocess.run([sys.executable, "-m", "pipeline", "run", str(cfg)], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"pipeline: cannot start: {want}", out.stderr
    assert main(["check", str(cfg)]) == 1  # check resolves the model the same way, in-process here
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"pipeline check: {want}"


def test_check_takes_the_class_names_from_the_model_when_labels_are_left_out(tmp_path: Path, capsys) -> None:
    path = build_tiny_rtdetr_onnx(tmp_path / "named.onnx", num_classes=3, input_size=64, names=["x", "y", "z"])
    cfg = write_config(tmp_path / "cfg.yaml", [{"id": "a", "url": "rtsp://127.0.0.1:9/x"}],
                       {"path": str(path), "input": {"resize": "stretch"}})  # no labels, no input_size
    assert main(["check", str(cfg)]) == 0
    assert ("model: end2end layout, 3 classes (metadata), input 64x64 NCHW float32 RGB stretch, dynamic batch"
            in capsys.readouterr().err.splitlines())


def test_check_prints_the_resolved_model_line(tmp_path: Path, capsys) -> None:
    path = build_tiny_yolo_onnx(tmp_path / "static.onnx", num_classes=2, input_size=64, batch=1)
    cfg = write_config(tmp_path / "cfg.yaml", [{"id": "a", "url": "rtsp://127.0.0.1:9/x"}],
                       {"path": str(path), "labels": LABELS}, scheduler={"max_batch": 4})
    assert main(["check", str(cfg)]) == 0
    assert ("model: yolov8 layout, 2 classes (config), input 64x64 NCHW float32 RGB letterbox pad 114, "
            "batch 1 static -> made dynamic") in capsys.readouterr().err.splitlines()


def test_auto_reads_names_and_size_from_the_model(tmp_path: Path) -> None:
    path = build_tiny_rtdetr_onnx(tmp_path / "rtdetr.onnx", num_classes=3, input_size=64, names=["x", "y", "z"])
    spec = resolve_model(ModelConfig(path=path))  # no labels, no input_size: the model says both
    assert spec.labels == ("x", "y", "z") and spec.labels_source == "metadata" and spec.input.size == 64
    assert spec.format == "end2end" and spec.end2end.columns == ("box", "classes")
    assert (spec.end2end.box, spec.end2end.normalized) == ("cxcywh", True)
    with pytest.raises(ModelError, match="the model's metadata names 3 classes but model.labels has 2"):
        resolve_model(ModelConfig(path=path, labels=LABELS))
    with pytest.raises(ModelError, match=r"model input 'images' is \[batch, 3, 64, 64\] but model.input_size is 320"):
        resolve_model(ModelConfig(path=path, input_size=320))


def test_auto_refuses_what_shapes_cannot_tell_and_names_what_fits(tmp_path: Path) -> None:
    yolox = build_tiny_yolox_onnx(tmp_path / "yolox.onnx", num_classes=2, input_size=64)
    with pytest.raises(ModelError) as err:
        resolve_model(ModelConfig(path=yolox, labels=LABELS))
    assert str(err.value) == (f"{yolox}: output output [batch, 84, 7] is ambiguous for 2 classes: set model.format "
                              f"to one of yolov5, yolox")
    with pytest.raises(ModelError) as err:
        resolve_model(ModelConfig(path=yolox, labels=LABELS, format="yolov8"))
    assert str(err.value) == (f"{yolox}: model.format yolov8 does not fit output output [batch, 84, 7] with 2 "
                              f"classes; it fits yolov5, yolox")
    nameless = build_tiny_yolov5_onnx(tmp_path / "v5.onnx", num_classes=2, input_size=64)
    with pytest.raises(ModelError, match="the model names no classes in its metadata; set model.labels"):
        resolve_model(ModelConfig(path=nameless))
    assert resolve_model(ModelConfig(path=nameless, labels=LABELS)).format == "yolov5"  # 3 anchors a cell


def test_describe_says_what_the_input_takes(tmp_path: Path) -> None:
    path = build_tiny_yolo_onnx(tmp_path / "t.onnx", num_classes=2, input_size=64)
    cfg = ModelConfig(path=path, labels=LABELS, input={"channels": "BGR", "resize": "stretch", "scale": 1 / 127.5,
                                                       "mean": [1, 1, 1]})
    assert describe_model(cfg, 8) == ("model: yolov8 layout, 2 classes (config), input 64x64 NCHW float32 BGR "
                                      "scale 0.00784314 mean [1.0, 1.0, 1.0] std [1.0, 1.0, 1.0] stretch, dynamic batch")


def frame(i: int, camera: str) -> Frame:
    return Frame(camera_id=camera, index=i, pts=None, captured_at=0.0, width=64, height=64, image=None)


def test_nan_frames_are_dropped_alone_or_the_batch_raises(tmp_path: Path) -> None:
    path = edited(tmp_path, "nan_dark.onnx", nan_when_dark)
    with create_backend(model_cfg(path), 4, "cpu") as backend:  # grey passes the start-up check
        x = np.zeros((3, 3, 64, 64), np.float32)
        x[0] = 0.9  # bright: a finite output; 1 and 2 dark: NaN
        x[0, :, 8:16, 8:16] = 1.0
        out = backend._run_chunk(x, 3)
    assert not np.isnan(out[0]).any() and all(np.isnan(out[i]).any() for i in (1, 2))
    frames = (frame(0, "bright"), frame(1, "dark"), frame(2, "dark"))
    t = LetterboxTransform.fit(64, 64, 64)
    result = InferenceResult(frames=frames, transforms=(t, t, t), output=out, formed_at=0.0)
    dropped: list[Frame] = []
    post = DetectionPostprocessor.for_model(backend.model_spec, 0.5, 0.5, on_nan=dropped.append)
    published = post(result)
    assert [f.camera_id for f in published] == ["bright"] and published[0].detections
    assert dropped == [frames[1], frames[2]]
    with pytest.raises(NonFiniteOutput, match=r"model output has NaN for 2 of 3 frames \(cameras dark\)"):
        DetectionPostprocessor.for_model(backend.model_spec, 0.5, 0.5)(result)


def test_non_detect_tasks_are_refused(tmp_path: Path) -> None:
    import onnx

    path = build_tiny_rtdetr_onnx(tmp_path / "pose.onnx", num_classes=3, input_size=64, names=["x", "y", "z"])
    model = onnx.load(str(path))
    next(p for p in model.metadata_props if p.key == "task").value = "pose"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="metadata says task pose; only detect models are supported"):
        resolve_model(ModelConfig(path=path))


def test_explicit_end2end_takes_any_column_order(tmp_path: Path) -> None:
    """[B, 16, 7] with 3 classes: auto reads it as 4 box columns + 3 class scores; read as an NMS
    export's (batch, box, class, score) rows it needs model.end2end.columns; a column list that does
    not add up to 7 is a one-line error."""
    path = build_tiny_rtdetr_onnx(tmp_path / "seven.onnx", num_classes=3, input_size=64)
    cfg = ModelConfig(path=path, labels=["x", "y", "z"], format="end2end",
                      end2end={"columns": ["skip", "box", "class", "score"]})
    spec = resolve_model(cfg)
    assert spec.end2end.columns == ("skip", "box", "class", "score") and spec.end2end.box == "xyxy"
    bad = ModelConfig(path=path, labels=["x", "y", "z"], format="end2end", end2end={"columns": ["box", "score"]})
    with pytest.raises(ModelError, match=r"end2end columns \['box', 'score'\] take 5 columns but the output is "
                                         r"\[batch, 16, 7\]; set model.end2end.columns"):
        resolve_model(bad)


def test_check_applies_the_tensorrt_limits(tmp_path: Path) -> None:
    yolox = build_tiny_yolox_onnx(tmp_path / "yolox.onnx", num_classes=2, input_size=64)
    with pytest.raises(ModelError, match="model.format yolox runs on backend onnxruntime only"):
        describe_model(ModelConfig(path=yolox, labels=LABELS, format="yolox", backend="tensorrt"), 8)


def test_output_columns_known_only_at_run_time_are_checked_at_start(tmp_path: Path) -> None:
    """TF-style outputs whose columns the file leaves open: a model.end2end.columns that does not add
    up to what the model returns is refused at start (one grey picture), not on every batch."""
    from tests.support.model_families import build_tiny_tf_od_onnx

    path = build_tiny_tf_od_onnx(tmp_path / "ssd.onnx", num_classes=3, input_size=64)
    cfg = ModelConfig(path=path, labels=["x", "y", "z"], end2end={"columns": ["box", "score", "class", "skip"]})
    with pytest.raises(ValueError) as err:
        create_backend(cfg, 2, "cpu")
    assert str(err.value) == (f"{path}: the end2end output is [1, 16, 7]; expected [B, N, 8] (columns "
                              f"['box', 'score', 'class', 'skip'])")
