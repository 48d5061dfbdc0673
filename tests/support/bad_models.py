"""Bad models for the start-up and run-time checks: the tiny YOLOv8-layout model of
tests/support/tiny_model.py ([B, 6, 64], 2 classes) with its output edited."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.support.tiny_model import OUTPUT_NAME, build_tiny_yolo_onnx


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


def unchanged(g) -> None:
    g.node.append(helper.make_node("Identity", ["raw"], [OUTPUT_NAME]))
    set_output(g, ["batch", 6, 64])


def two_images(g) -> None:
    g.input.append(helper.make_tensor_value_info("images2", TensorProto.FLOAT, ["batch", 3, 64, 64]))
    g.node.append(helper.make_node("Identity", ["raw"], [OUTPUT_NAME]))
    set_output(g, ["batch", 6, 64])
