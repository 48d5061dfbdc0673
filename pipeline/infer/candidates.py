"""Candidate selection inside the model graph, so only the best anchors leave the device.

A YOLOv8-layout output is [B, 4+C, N]: for YOLOv8n at 640 that is 84 x 8400 float32 = 2.8 MB per
image, 90 MB per batch of 32. Copying that to host memory after every call and scanning it there
capped inference at ~850 frames/s on the H200 (docs/BENCHMARKS.md). Appending a few standard ONNX
operators to the model makes the backend return [B, 6, K] instead (K = max_candidates, 1024 by
default: 24 KB per image):

    rows 0..3  cx, cy, w, h of the K best anchors (model-input pixels), best first
    row  4     the anchor's best class score
    row  5     that class's id (as float)

    scores  = out[:, 4:, :]
    cls     = ArgMax(scores, axis=1)             # best class (lowest id on ties)
    best    = GatherElements(scores, cls)        # its score
    val, idx  = TopK(best, min(K, N), axis=1)    # the K best anchors, sorted
    gather boxes and cls at idx; concat; cast to float32

Measured on the H200 (YOLOv8n fp16, batch 32, scripts/gpu_lab/infer_variants.py): the first version's
TopK k=1 over the class axis took 1.3 ms of a 9.7 ms call, ArgMax + GatherElements a fraction of
that; a float16 model is selected in float16 and only [B, 6, K] is cast (same values).

The host postprocess then thresholds, maps and runs NMS on K candidates instead of N anchors. The
result equals decoding the full output whenever at most K anchors pass the score threshold; when
more do, the K best are kept and the postprocess counts the frame as truncated
(pipeline_candidates_truncated_total), so the cut is visible rather than silent.

Every operator used exists since opset 11 and runs on ONNX Runtime's CUDA EP and in TensorRT.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from pipeline.frame import CANDIDATE_ROWS

log = logging.getLogger(__name__)

OUTPUT_NAME = "candidates"
MIN_OPSET = 11  # GatherElements; TopK with K as an input
_PREFIX = "pipeline_candidates/"


class CandidateGraphError(ValueError):
    """The model cannot take the candidate graph; str() is one line naming the model."""


def _dim(d: Any) -> int | None:
    return d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None


def append_candidate_selection(model: Any, max_candidates: int, where: str = "model", *,
                               class_max: str = "argmax", cast_last: bool = True) -> Any:
    """A copy of `model` (onnx.ModelProto) whose only output is [B, 6, min(K, N)] candidates.

    class_max: "argmax" (ArgMax, then the score gathered at it) or "topk" (TopK k=1 over the class
      axis, the slower first version, kept for scripts/gpu_lab/infer_variants.py); both give the lowest
      class id on ties.
    cast_last: for a float16 model, select in float16 and cast only the [B, 6, K] result to float32
      (the values are the same: every selected value is a float16 either way, and class ids up to
      2048 are exact in float16), instead of casting the whole [B, 4+C, N] output first."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    if max_candidates < 1:
        raise CandidateGraphError(f"{where}: max_candidates must be >= 1, got {max_candidates}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise CandidateGraphError(f"{where}: opset {opset} is older than {MIN_OPSET}; candidate "
                                  f"selection needs GatherElements")
    graph = model.graph
    if not graph.output:
        raise CandidateGraphError(f"{where}: the graph has no output")
    raw = graph.output[0]
    dims = list(raw.type.tensor_type.shape.dim)
    rows = _dim(dims[1]) if len(dims) == 3 else None
    if len(dims) != 3 or rows is None or rows < 5:
        raise CandidateGraphError(f"{where}: output {raw.name!r} must be [B, 4+C, N] with a fixed 4+C")
    anchors = _dim(dims[2])

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    p = _PREFIX

    def const(name: str, values: list[int]) -> str:
        g.initializer.append(numpy_helper.from_array(np.array(values, dtype=np.int64), p + name))
        return p + name

    if class_max not in ("topk", "argmax"):
        raise CandidateGraphError(f"{where}: class_max {class_max!r} must be 'topk' or 'argmax'")
    nodes = []
    src = raw.name
    elem = raw.type.tensor_type.elem_type
    select_type = TensorProto.FLOAT
    if elem == TensorProto.FLOAT16 and cast_last and rows - 4 <= 2048:
        select_type = elem
    elif elem != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [src], [p + "raw_f32"], to=TensorProto.FLOAT))
        src = p + "raw_f32"
    axis1, zero, four, end = const("axis1", [1]), const("zero", [0]), const("four", [4]), const("rows", [rows])
    nodes += [
        helper.make_node("Slice", [src, zero, four, axis1], [p + "boxes"]),
        helper.make_node("Slice", [src, four, end, axis1], [p + "scores"]),
    ]
    if class_max == "topk":
        nodes.append(helper.make_node("TopK", [p + "scores", const("one", [1])], [p + "best", p + "best_class"],
                                      axis=1))
    else:
        nodes += [
            helper.make_node("ArgMax", [p + "scores"], [p + "best_class"], axis=1, keepdims=1),
            helper.make_node("GatherElements", [p + "scores", p + "best_class"], [p + "best"], axis=1),
        ]
    nodes.append(helper.make_node("Reshape", [p + "best", const("flat", [0, -1])], [p + "best_flat"]))
    if anchors is not None:
        k_name = const("k", [min(max_candidates, anchors)])
    else:  # N depends on the input size: K = min(max_candidates, N) at run time
        if opset < 12:
            raise CandidateGraphError(f"{where}: output {raw.name!r} has a dynamic anchor count, which "
                                      f"needs opset 12 (Min on int64); the model is opset {opset}")
        nodes += [
            helper.make_node("Shape", [src], [p + "shape"]),
            helper.make_node("Slice", [p + "shape", const("two", [2]), const("three", [3])], [p + "n"]),
            helper.make_node("Min", [const("kmax", [max_candidates]), p + "n"], [p + "k"]),
        ]
        k_name = p + "k"
    row = const("row", [0, 1, -1])
    nodes += [
        helper.make_node("TopK", [p + "best_flat", k_name], [p + "top_score", p + "top_index"], axis=1,
                         largest=1, sorted=1),
        helper.make_node("Reshape", [p + "top_index", row], [p + "index_row"]),
        helper.make_node("Reshape", [p + "top_score", row], [p + "score_row"]),
        helper.make_node("GatherElements", [p + "best_class", p + "index_row"], [p + "class_row"], axis=2),
        helper.make_node("Cast", [p + "class_row"], [p + "class_row_sel"], to=select_type),
        helper.make_node("Tile", [p + "index_row", const("tile4", [1, 4, 1])], [p + "index_box"]),
        helper.make_node("GatherElements", [p + "boxes", p + "index_box"], [p + "box_rows"], axis=2),
    ]
    rows_out = [p + "box_rows", p + "score_row", p + "class_row_sel"]
    if select_type == TensorProto.FLOAT:
        nodes.append(helper.make_node("Concat", rows_out, [OUTPUT_NAME], axis=1))
    else:
        nodes += [helper.make_node("Concat", rows_out, [p + "candidates_sel"], axis=1),
                  helper.make_node("Cast", [p + "candidates_sel"], [OUTPUT_NAME], to=TensorProto.FLOAT)]
    g.node.extend(nodes)
    batch = dims[0]
    k_dim: Any = min(max_candidates, anchors) if anchors is not None else "candidates"
    output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                           [batch.dim_param or batch.dim_value or "batch", CANDIDATE_ROWS, k_dim])
    del g.output[:]
    g.output.append(output)
    return out


def load_with_candidates(path: Path, max_candidates: int | None, where: str,
                         check_output: Callable[[str, list[Any]], None], instead: str) -> Any | None:
    """The model at `path` (onnx.ModelProto) with candidate selection appended, or None where the
    backend uses the model's full output: switched off, no onnx package (a warning), not readable
    as ONNX (the runtime's own load reports that), or a model the graph does not fit (an info line).

    check_output(name, dims) sees the model's own first output before the graph is appended (dims:
    an int, the dim_param's name, or None) and raises for a label-count mismatch. `where` names the
    model in messages; `instead` ends the log lines, saying what is done with the full output."""
    if not max_candidates:
        return None
    try:
        import onnx
    except ImportError:
        log.warning("%s: the onnx package is missing; %s", where, instead)
        return None
    try:
        model = onnx.load(str(path))  # with external weights, resolved next to the file
    except Exception:  # noqa: BLE001 - not ONNX (or weights missing): the runtime's own load reports it
        return None
    if model.graph.output:  # the label count is checked on the model's own output, before the graph
        raw = model.graph.output[0]
        check_output(raw.name, [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                for d in raw.type.tensor_type.shape.dim])
    try:
        return append_candidate_selection(model, max_candidates, where)
    except CandidateGraphError as exc:
        log.info("%s; %s", exc, instead)
        return None


def rows_as_anchors(model: Any, fmt: str, input_size: int, strides: tuple[int, ...] = (8, 16, 32),
                    where: str = "model") -> Any:
    """A copy of a yolov5 or yolox model ([B, N, 5+C] rows) whose output is the yolov8 layout
    [B, 4+C, N], so append_candidate_selection applies to it too: cx, cy, w, h (yolox: decoded on
    its stride grid, cx = (x + col) * s, w = exp(w) * s) and objectness x class score per class.
    The best class and score per row are then exactly what the yolov5/yolox decoders compute."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    raw = graph.output[0]
    dims = list(raw.type.tensor_type.shape.dim)
    cols = _dim(dims[2]) if len(dims) == 3 else None
    if cols is None or cols < 6:
        raise CandidateGraphError(f"{where}: output {raw.name!r} must be [B, N, 5+C] with a fixed 5+C")
    elem = raw.type.tensor_type.elem_type
    if elem not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        raise CandidateGraphError(f"{where}: output {raw.name!r} has element type {elem}; expected float")
    ftype = np.float16 if elem == TensorProto.FLOAT16 else np.float32
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    p = _PREFIX + "rows/"

    def const(name: str, values: Any, dtype: Any = np.int64) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), p + name))
        return p + name

    axis2 = const("axis2", [2])
    cut = lambda a, b, name: helper.make_node("Slice", [raw.name, const(f"{name}_a", [a]),  # noqa: E731
                                                        const(f"{name}_b", [b]), axis2], [p + name])
    nodes = [cut(0, 4, "box"), cut(4, 5, "obj"), cut(5, cols, "cls"),
             helper.make_node("Mul", [p + "cls", p + "obj"], [p + "scores"])]
    box = p + "box"
    if fmt == "yolox":
        grids, steps = [], []
        for s in strides:
            n = input_size // s
            rows, columns = np.divmod(np.arange(n * n), n)
            grids.append(np.stack([columns, rows], 1))
            steps.append(np.full((n * n, 1), s))
        grid, stride = np.concatenate(grids), np.concatenate(steps)
        nodes += [
            helper.make_node("Slice", [box, const("z", [0]), const("two", [2]), axis2], [p + "xy"]),
            helper.make_node("Slice", [box, p + "two", const("four", [4]), axis2], [p + "wh"]),
            helper.make_node("Add", [p + "xy", const("grid", grid, ftype)], [p + "xy_cell"]),
            helper.make_node("Mul", [p + "xy_cell", const("stride", stride, ftype)], [p + "cxcy"]),
            helper.make_node("Exp", [p + "wh"], [p + "wh_exp"]),
            helper.make_node("Mul", [p + "wh_exp", p + "stride"], [p + "wh_px"]),
            helper.make_node("Concat", [p + "cxcy", p + "wh_px"], [p + "box_px"], axis=2),
        ]
        box = p + "box_px"
    anchors_name = p + "anchors"
    nodes += [helper.make_node("Concat", [box, p + "scores"], [p + "rows"], axis=2),
              helper.make_node("Transpose", [p + "rows"], [anchors_name], perm=[0, 2, 1])]
    g.node.extend(nodes)
    batch = dims[0]
    n_dim: Any = _dim(dims[1]) or "anchors"
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(
        anchors_name, elem, [batch.dim_param or batch.dim_value or "batch", cols - 1, n_dim]))
    return out
