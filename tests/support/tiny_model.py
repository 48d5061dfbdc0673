"""A tiny, real ONNX "detector" with the YOLOv8 output layout, built with onnx.helper (no torch).

What it computes, for input images [B, 3, S, S] (0..1 RGB) and output [B, 4 + C, N]:

- The input is cut into a G x G grid of cells, G = S / stride; anchor n = row * G + col
  (row-major, like YOLOv8's flattening of one feature map), so N = G * G.
- Each anchor looks at a `window` x `window` square centred on its cell (window defaults to
  stride, i.e. exactly the cell; a larger window makes neighbouring anchors overlap, which gives
  NMS something to suppress). Pixels outside the image are not counted.
- Rows 0..3 (box): cx = (col + 0.5) * stride, cy = (row + 0.5) * stride, w = h = window,
  in model-input pixels, the same for every image.
- Row 4 + c (score of class c): the mean of colour channel c % 3 over the anchor's window.
  So a pure red square scores class 0, green class 1, blue class 2; a white square scores
  every class equally (the postprocess then picks class 0, the first best).

Consequence for tests: a bright square of side `window` whose top-left corner sits at
(col * stride - (window - stride) / 2, row * stride - (window - stride) / 2) in model pixels
yields score ~1.0 at anchor (row, col) with a box exactly on the square; letterbox padding
(114 / 255 = 0.447) and a dark background score below 0.5.

`tiny_yolo_reference` computes the same thing in numpy, so backend tests can compare outputs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_NAME = "images"  # the names ultralytics exports use
OUTPUT_NAME = "output0"
OPSET = 17
IR_VERSION = 8  # old enough for any onnxruntime >= 1.18


def _window(stride: int, window: int | None) -> int:
    w = stride if window is None else window
    if w < stride or (w - stride) % 2:
        raise ValueError(f"window {w} must be >= stride {stride} and differ from it by an even number")
    return w


def anchor_boxes(input_size: int, stride: int = 8, window: int | None = None) -> np.ndarray:
    """[4, N] float32 cx, cy, w, h of every anchor, in model-input pixels."""
    w = _window(stride, window)
    if input_size % stride:
        raise ValueError(f"input_size {input_size} must be a multiple of stride {stride}")
    g = input_size // stride
    rows, cols = np.divmod(np.arange(g * g), g)
    return np.stack([(cols + 0.5) * stride, (rows + 0.5) * stride,
                     np.full(g * g, w), np.full(g * g, w)]).astype(np.float32)


def build_tiny_yolo_onnx(path: str | Path, num_classes: int = 2, input_size: int = 64, stride: int = 8,
                         window: int | None = None, batch: int | None = None,
                         input_dtype: str = "float32") -> Path:
    """Write the model described in the module docstring to `path` and return the path.

    batch: None gives a dynamic batch dimension ("batch"); an int fixes it.
    input_dtype: "float32" or "float16" (a float16 input is cast to float32 inside the model).
    """
    w = _window(stride, window)
    boxes = anchor_boxes(input_size, stride, w)
    n = boxes.shape[1]
    pad = (w - stride) // 2
    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}[input_dtype]
    batch_dim: int | str = "batch" if batch is None else batch

    nodes = []
    x = INPUT_NAME
    if elem != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [INPUT_NAME], ["x_f32"], to=TensorProto.FLOAT))
        x = "x_f32"
    nodes += [
        # [B,3,S,S] -> [B,3,G,G]: per-anchor channel means over the window
        helper.make_node("AveragePool", [x], ["cell_means"], kernel_shape=[w, w], strides=[stride, stride],
                         pads=[pad, pad, pad, pad], count_include_pad=0),
        # class c takes channel c % 3 -> [B,C,G,G] -> [B,C,N]
        helper.make_node("Gather", ["cell_means", "class_channels"], ["class_maps"], axis=1),
        helper.make_node("Reshape", ["class_maps", "scores_shape"], ["scores"]),
        # constant boxes [1,4,N] broadcast to [B,4,N]
        helper.make_node("Shape", [INPUT_NAME], ["batch_size"], start=0, end=1),
        helper.make_node("Concat", ["batch_size", "boxes_tail_shape"], ["boxes_shape"], axis=0),
        helper.make_node("Expand", ["anchor_boxes", "boxes_shape"], ["boxes"]),
        helper.make_node("Concat", ["boxes", "scores"], [OUTPUT_NAME], axis=1),
    ]
    initializers = [
        numpy_helper.from_array(np.arange(num_classes, dtype=np.int64) % 3, "class_channels"),
        numpy_helper.from_array(np.array([0, num_classes, -1], dtype=np.int64), "scores_shape"),
        numpy_helper.from_array(np.array([4, n], dtype=np.int64), "boxes_tail_shape"),
        numpy_helper.from_array(boxes[None], "anchor_boxes"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_yolo", [helper.make_tensor_value_info(INPUT_NAME, elem, [batch_dim, 3, input_size, input_size])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch_dim, 4 + num_classes, n])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tests.support.tiny_model")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def tiny_yolo_reference(images: np.ndarray, num_classes: int = 2, stride: int = 8,
                        window: int | None = None) -> np.ndarray:
    """numpy version of the model: [B,3,S,S] -> [B, 4 + C, N] float32."""
    x = np.asarray(images, dtype=np.float32)
    b, _, s, _ = x.shape
    w = _window(stride, window)
    pad = (w - stride) // 2
    g = s // stride
    means = np.empty((b, 3, g, g), dtype=np.float32)
    for r in range(g):
        y0, y1 = max(0, r * stride - pad), min(s, r * stride - pad + w)
        for c in range(g):
            x0, x1 = max(0, c * stride - pad), min(s, c * stride - pad + w)
            means[:, :, r, c] = x[:, :, y0:y1, x0:x1].mean(axis=(2, 3))
    scores = means[:, np.arange(num_classes) % 3].reshape(b, num_classes, g * g)
    boxes = np.broadcast_to(anchor_boxes(s, stride, w)[None], (b, 4, g * g))
    return np.concatenate([boxes, scores], axis=1)


def image_means_via_io_binding(ort, tensor) -> np.ndarray:
    """Each image's mean of a [B, 3, S, S] float32 device tensor (`__cuda_array_interface__`-like:
    device_id, dtype, shape, data_ptr), computed by an ONNX Runtime CUDA session that reads the tensor
    in place through IO binding: proves a preprocessor's device output is a valid model input."""
    size = int(tensor.shape[2])
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0)], "mean",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["b", 3, size, size])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["b"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
    binding = session.io_binding()
    binding.bind_input("images", "cuda", tensor.device_id, tensor.dtype, list(tensor.shape), tensor.data_ptr)
    binding.bind_output("mean")
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()[0]
