"""model.format auto and the model's own description (pipeline/infer/model_spec.py), and bad models:
each is a one-line error naming the file at start (never a traceback), as the backend, `pipeline
check` and `pipeline run` report it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.cli import main
from pipeline.config import ModelConfig
from pipeline.frame import Frame, InferenceResult, LetterboxTransform
from pipeline.infer import create_backend
from pipeline.infer.model_spec import ModelError, describe_model, resolve_model
from pipeline.postprocess import DetectionPostprocessor, NonFiniteOutput
from tests.support.daemon_harness import REPO, write_config
from tests.support.model_families import build_tiny_rtdetr_onnx, build_tiny_yolov5_onnx, build_tiny_yolox_onnx
from tests.support.tiny_model import OUTPUT_NAME, build_tiny_yolo_onnx

LABELS = ["a", "b"]


def edited(tmp_path: Path, name: str, edit) -> Path:
    """The tiny YOLOv8-layout model ([B, 6, 64], 2 classes) with its output run through edit(graph)."""
    src = build_tiny_yolo_onnx(tmp_path / "src.onnx", num_classes=2, input_size=64)
    model = onnx.load(str(src))
    for node in model.graph.node:
        node.output[:] = ["raw" if o == OUTPUT_NAME else o for o in node.output]
    edit(model.graph)
    del model.graph.value_info[:]
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def set_output(graph, dims) -> None:
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, dims))


def wrong_rank(g) -> None:
    g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    g.node.append(helper.make_node("Unsqueeze", ["raw", "axis1"], [OUTPUT_NAME]))
    set_output(g, ["batch", 1, 6, 64])


def too_few_rows(g) -> None:
    for n, v in (("s0", [0]), ("s3", [3]), ("ax", [1])):
        g.initializer.append(numpy_helper.from_array(np.array(v, np.int64), n))
    g.node.append(helper.make_node("Slice", ["raw", "s0", "s3", "ax"], [OUTPUT_NAME]))
    set_output(g, ["batch", 3, 64])


def nan_always(g) -> None:
    g.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
    g.node.append(helper.make_node("Mul", ["raw", "nan"], [OUTPUT_NAME]))
    set_output(g, ["batch", 6, 64])


def nan_when_dark(g) -> None:
    """raw + 0 * sqrt(mean(image) - 0.3): NaN for dark pictures, unchanged otherwise (grey 114 is not dark)."""
    g.initializer.extend([numpy_helper.from_array(np.array(0.3, np.float32), "dark"),
                          numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    g.node.extend([helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
                   helper.make_node("Sub", ["mean", "dark"], ["lift"]),
                   helper.make_node("Sqrt", ["lift"], ["root"]),
                   helper.make_node("Mul", ["root", "zero"], ["nan_or_zero"]),
                   helper.make_node("Reshape", ["nan_or_zero", "shape3"], ["b11"]),
                   helper.make_node("Add", ["raw", "b11"], [OUTPUT_NAME])])
    g.initializer.append(numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"))
    set_output(g, ["batch", 6, 64])


def two_images(g) -> None:
    g.input.append(helper.make_tensor_value_info("images2", TensorProto.FLOAT, ["batch", 3, 64, 64]))
    g.node.append(helper.make_node("Identity", ["raw"], [OUTPUT_NAME]))
    set_output(g, ["batch", 6, 64])


def model_cfg(path: Path, **kw) -> ModelConfig:
    kw.setdefault("labels", LABELS)
    return ModelConfig(path=path, **kw)


BAD = {  # name: (edit, labels, words the one-line error must hold)
    "wrong_rank": (wrong_rank, LABELS, "output 'output0' is [batch, 1, 6, 64] (rank 4); no model.format fits"),
    "labels": (lambda g: two_images.__globals__["set_output"](g, ["batch", 6, 64]) or g.node.append(
        helper.make_node("Identity", ["raw"], [OUTPUT_NAME])), ["a", "b", "c"],
        "as yolov8 it has 2 classes, but model.labels has 3"),
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
