"""Tiny real ONNX detectors of each supported family, built with onnx.helper (no torch), each with
its family's real output head conventions, plus graph edits that re-export the demo detector in
other layouts. Weights are random (seeded): the point is the output encoding, not accuracy.

Families (input [B, 3, S, S] float 0..1 RGB unless said; a shared trunk: AveragePool(stride) then a
1x1 Conv per stride, so outputs depend on the picture):

- YOLOX (tools/export_onnx.py, decode_in_inference off): [B, N, 5+C], N = cells of strides 8/16/32
  (stride 8 first, row-major), columns raw x/y offsets, log w/h, sigmoid objectness, sigmoid classes.
- YOLOv5 (export.py, Detect head decoding in the graph): [B, 3*N, 5+C], per stride 3 anchors,
  xy = (2*sig - 0.5 + grid) * stride, wh = (2*sig)^2 * anchor, sigmoid objectness and classes.
- RT-DETR (ultralytics export): [B, Q, 4+C], cx, cy, w, h in 0..1 of the input, sigmoid class scores.
- D-FINE / RT-DETR (tools/deployment/export_onnx.py, with the postprocessor): inputs images and
  orig_target_sizes [B, 2] (w, h); outputs labels [B, Q] int64, boxes [B, Q, 4] x1, y1, x2, y2 scaled by
  orig_target_sizes, scores [B, Q] (sigmoid).
- TF OD API (tf2onnx of an exported SavedModel): NHWC uint8 input; detection_boxes [B, Q, 4] ymin, xmin,
  ymax, xmax in 0..1, detection_scores [B, Q] best first, detection_classes [B, Q] 1-based (float),
  num_detections [B] (float).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
YOLOV5_ANCHORS = {8: [(10, 13), (16, 30), (33, 23)], 16: [(30, 61), (62, 45), (59, 119)],
                  32: [(116, 90), (156, 198), (373, 326)]}


class _Graph:
    def __init__(self, seed: int) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, value: np.ndarray, base: str = "c") -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op: str, inputs: list[str], base: str | None = None, outputs: int = 1, **attrs) -> str | list[str]:
        outs = [self.name(base or op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, **attrs))
        return outs[0] if outputs == 1 else outs

    def conv_head(self, x: str, stride: int, channels: int, scale: float = 1.0) -> str:
        """[B,3,S,S] -> [B, channels, G, G]: mean over each stride x stride cell, then a random 1x1 conv."""
        pooled = self.op("AveragePool", [x], kernel_shape=[stride, stride], strides=[stride, stride])
        w = (self.rng.normal(0, 2.0, (channels, 3, 1, 1)) * scale).astype(np.float32)
        b = self.rng.normal(0, 0.5, channels).astype(np.float32)
        return self.op("Conv", [pooled, self.const(w), self.const(b)])

    def flat(self, x: str, channels: int) -> str:
        """[B, ch, G, G] -> [B, G*G, ch]."""
        r = self.op("Reshape", [x, self.const(np.array([0, channels, -1], np.int64))])
        return self.op("Transpose", [r], perm=[0, 2, 1])

    def channels(self, flat: str, start: int, stop: int) -> str:
        """Channels start..stop (last axis) of a flat() output."""
        return self.op("Slice", [flat, self.const(np.array([start], np.int64)), self.const(np.array([stop], np.int64)),
                                 self.const(np.array([2], np.int64))])

    def save(self, path: Path, inputs: list, outputs: list, metadata: dict[str, str] | None = None) -> Path:
        graph = helper.make_graph(self.nodes, "tiny", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        for k, v in (metadata or {}).items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return Path(path)


def _image_input(batch: int | str = "batch", size: int = 64) -> object:
    return helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])


def build_tiny_yolox_onnx(path: Path, num_classes: int = 3, input_size: int = 64, seed: int = 1) -> Path:
    g = _Graph(seed)
    parts = []
    for s in (8, 16, 32):
        head = g.conv_head("images", s, 5 + num_classes, scale=0.5)
        reg = g.op("Slice", [head, g.const(np.array([0], np.int64)), g.const(np.array([4], np.int64)),
                             g.const(np.array([1], np.int64))])
        rest = g.op("Slice", [head, g.const(np.array([4], np.int64)), g.const(np.array([5 + num_classes], np.int64)),
                              g.const(np.array([1], np.int64))])
        parts.append(g.flat(g.op("Concat", [reg, g.op("Sigmoid", [rest])], axis=1), 5 + num_classes))
    out = g.op("Concat", parts, axis=1)
    g.nodes.append(helper.make_node("Identity", [out], ["output"]))
    n = sum((input_size // s) ** 2 for s in (8, 16, 32))
    return g.save(path, [_image_input(size=input_size)],
                  [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n, 5 + num_classes])])


def build_tiny_yolov5_onnx(path: Path, num_classes: int = 3, input_size: int = 64, seed: int = 2,
                           names: list[str] | None = None) -> Path:
    g = _Graph(seed)
    parts = []
    for s in (8, 16, 32):
        gs = input_size // s
        for ax, wh in enumerate(YOLOV5_ANCHORS[s]):
            head = g.op("Sigmoid", [g.conv_head("images", s, 5 + num_classes, scale=0.7)])
            flat = g.flat(head, 5 + num_classes)  # [B, G*G, 5+C]
            rows, cols = np.divmod(np.arange(gs * gs), gs)
            grid = np.stack([cols, rows], 1).astype(np.float32) - 0.5
            xy = g.op("Slice", [flat, g.const(np.array([0], np.int64)), g.const(np.array([2], np.int64)),
                                g.const(np.array([2], np.int64))])
            wh_ = g.op("Slice", [flat, g.const(np.array([2], np.int64)), g.const(np.array([4], np.int64)),
                                 g.const(np.array([2], np.int64))])
            conf = g.op("Slice", [flat, g.const(np.array([4], np.int64)),
                                  g.const(np.array([5 + num_classes], np.int64)), g.const(np.array([2], np.int64))])
            two = g.const(np.float32(2.0))
            xy = g.op("Mul", [g.op("Add", [g.op("Mul", [xy, two]), g.const(grid)]), g.const(np.float32(s))])
            wh2 = g.op("Mul", [wh_, two])
            wh_out = g.op("Mul", [g.op("Mul", [wh2, wh2]), g.const(np.array(wh, np.float32))])
            parts.append(g.op("Concat", [xy, wh_out, conf], axis=2))
    out = g.op("Concat", parts, axis=1)
    g.nodes.append(helper.make_node("Identity", [out], ["output0"]))
    n = 3 * sum((input_size // s) ** 2 for s in (8, 16, 32))
    meta = {"stride": "32", "names": repr({i: v for i, v in enumerate(names)})} if names else None
    return g.save(path, [_image_input(size=input_size)],
                  [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", n, 5 + num_classes])], meta)


def build_tiny_rtdetr_onnx(path: Path, num_classes: int = 3, input_size: int = 64, seed: int = 3,
                           names: list[str] | None = None) -> Path:
    g = _Graph(seed)
    head = g.op("Sigmoid", [g.conv_head("images", 16, 4 + num_classes, scale=0.5)])
    out = g.flat(head, 4 + num_classes)  # [B, Q, 4+C]: cx, cy, w, h in 0..1, class scores
    g.nodes.append(helper.make_node("Identity", [out], ["output0"]))
    q = (input_size // 16) ** 2
    meta = {"names": repr({i: v for i, v in enumerate(names)}), "imgsz": f"[{input_size}, {input_size}]",
            "stride": "32", "task": "detect"} if names else None
    return g.save(path, [_image_input(size=input_size)],
                  [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", q, 4 + num_classes])], meta)


def build_tiny_dfine_onnx(path: Path, num_classes: int = 3, input_size: int = 64, seed: int = 5) -> Path:
    g = _Graph(seed)
    head = g.op("Sigmoid", [g.conv_head("images", 16, 4 + num_classes, scale=0.5)])
    flat = g.flat(head, 4 + num_classes)
    sl = lambda a, b: g.channels(flat, a, b)  # noqa: E731
    cx, cy, w, h = sl(0, 1), sl(1, 2), sl(2, 3), sl(3, 4)
    half = g.const(np.float32(0.5))
    hw, hh = g.op("Mul", [w, half]), g.op("Mul", [h, half])
    xyxy = g.op("Concat", [g.op("Sub", [cx, hw]), g.op("Sub", [cy, hh]), g.op("Add", [cx, hw]),
                           g.op("Add", [cy, hh])], axis=2)  # [B, Q, 4] in 0..1
    wh = g.op("Cast", ["orig_target_sizes"], to=TensorProto.FLOAT)  # [B, 2]: w, h
    scale = g.op("Unsqueeze", [g.op("Concat", [wh, wh], axis=1), g.const(np.array([1], np.int64))])  # [B, 1, 4]
    g.nodes.append(helper.make_node("Mul", [xyxy, scale], ["boxes"]))
    cls = sl(4, 4 + num_classes)
    g.nodes.append(helper.make_node("ReduceMax", [cls], ["scores"], axes=[2], keepdims=0))
    g.nodes.append(helper.make_node("ArgMax", [cls], ["labels"], axis=2, keepdims=0))
    q = (input_size // 16) ** 2
    inputs = [_image_input(size=input_size),
              helper.make_tensor_value_info("orig_target_sizes", TensorProto.INT64, ["batch", 2])]
    outs = [helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch", q]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", q, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", q])]
    return g.save(path, inputs, outs)


def build_tiny_tf_od_onnx(path: Path, num_classes: int = 3, input_size: int = 64, seed: int = 4,
                          threshold: float = 0.3) -> Path:
    g = _Graph(seed)
    x = g.op("Transpose", ["input_tensor"], perm=[0, 3, 1, 2])
    x = g.op("Div", [g.op("Cast", [x], to=TensorProto.FLOAT), g.const(np.float32(255.0))])
    head = g.op("Sigmoid", [g.conv_head(x, 16, 4 + num_classes, scale=0.5)])
    flat = g.flat(head, 4 + num_classes)
    sl = lambda a, b: g.channels(flat, a, b)  # noqa: E731
    cy, cx, h, w = sl(0, 1), sl(1, 2), sl(2, 3), sl(3, 4)
    half = g.const(np.float32(0.5))
    hh, hw = g.op("Mul", [h, half]), g.op("Mul", [w, half])
    boxes = g.op("Concat", [g.op("Sub", [cy, hh]), g.op("Sub", [cx, hw]), g.op("Add", [cy, hh]),
                            g.op("Add", [cx, hw])], axis=2)  # [B, Q, 4] ymin, xmin, ymax, xmax
    cls = sl(4, 4 + num_classes)
    best = g.op("ReduceMax", [cls], axes=[2], keepdims=0)  # [B, Q]
    which = g.op("ArgMax", [cls], axis=2, keepdims=0)
    q = (input_size // 16) ** 2
    scores, order = g.op("TopK", [best, g.const(np.array([q], np.int64))], outputs=2, axis=1)
    idx4 = g.op("Expand", [g.op("Unsqueeze", [order, g.const(np.array([2], np.int64))]), g.op("Shape", [boxes])])
    g.nodes.append(helper.make_node("GatherElements", [boxes, idx4], ["detection_boxes"], axis=1))
    g.nodes.append(helper.make_node("Identity", [scores], ["detection_scores"]))
    classes = g.op("Cast", [g.op("GatherElements", [which, order], axis=1)], to=TensorProto.FLOAT)
    g.nodes.append(helper.make_node("Add", [classes, g.const(np.float32(1.0))], ["detection_classes"]))
    passed = g.op("Cast", [g.op("Greater", [scores, g.const(np.float32(threshold))])], to=TensorProto.FLOAT)
    g.nodes.append(helper.make_node("ReduceSum", [passed, g.const(np.array([1], np.int64))], ["num_detections"],
                                    keepdims=0))
    inp = helper.make_tensor_value_info("input_tensor", TensorProto.UINT8, [1, input_size, input_size, 3])
    outs = [helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, [1, q, 4]),
            helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, [1, q]),
            helper.make_tensor_value_info("detection_classes", TensorProto.FLOAT, [1, q]),
            helper.make_tensor_value_info("num_detections", TensorProto.FLOAT, [1])]
    return g.save(path, [inp], outs)


# ------------------------------------------------------------------ re-exports of the demo detector

def _rename_output(model: onnx.ModelProto, new: str) -> str:
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
    return old


def demo_variant(source: Path, path: Path, variant: str, batch: int | None = None, bake_batch: bool = False,
                 names: list[str] | None = None) -> Path:
    """The demo detector ([B, 4+C, N] yolov8) re-exported by graph edits:

    yolov8:  unchanged math, optionally a static batch
    yolov5:  [B, N, 5+C], objectness 1 (so obj x class = the same scores)
    end2end: [B, K, 6] x1, y1, x2, y2, score, class of the K best anchors after the model's own NMS
             (ONNX NonMaxSuppression, class-aware, IoU 0.5, score > 0.05), padded with score 0
    nhwc-bgr-uint8: input [B, S, S, 3] uint8 BGR, converted back to NCHW RGB 0..1 inside the graph

    bake_batch (yolov5 only): the last op is a Reshape to [1, -1, 5+C], the batch size written into
    the graph as many exporters do: such a graph cannot be made dynamic.
    names: written as ultralytics metadata (`names`, `imgsz`, `stride`, `task`).
    """
    model = onnx.load(str(source))
    g = model.graph
    classes = g.output[0].type.tensor_type.shape.dim[1].dim_value - 4
    nodes: list = []
    inits: list = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    if variant == "nhwc-bgr-uint8":
        old_in = g.input[0]
        size = old_in.type.tensor_type.shape.dim[2].dim_value
        for node in g.node:
            node.input[:] = ["v_rgb01" if i == old_in.name else i for i in node.input]
        nodes += [helper.make_node("Cast", ["images_u8"], ["v_f"], to=TensorProto.FLOAT),
                  helper.make_node("Transpose", ["v_f"], ["v_nchw"], perm=[0, 3, 1, 2]),
                  helper.make_node("Gather", ["v_nchw", const("v_bgr_idx", np.array([2, 1, 0], np.int64))],
                                   ["v_rgb"], axis=1),
                  helper.make_node("Div", ["v_rgb", const("v_255", np.float32(255.0))], ["v_rgb01"])]
        new_in = helper.make_tensor_value_info("images_u8", TensorProto.UINT8, ["batch", size, size, 3])
        g.input.remove(old_in)
        g.input.insert(0, new_in)
        rest = list(g.node)
        del g.node[:]
        g.node.extend(nodes + rest)
        g.initializer.extend(inits)
    elif variant == "yolov5":
        old = _rename_output(model, "v8_out")
        nodes += [helper.make_node("Transpose", ["v8_out"], ["v_t"], perm=[0, 2, 1]),  # [B, N, 4+C]
                  helper.make_node("Slice", ["v_t", const("v_s0", np.array([0], np.int64)),
                                             const("v_s1", np.array([1], np.int64)),
                                             const("v_ax", np.array([2], np.int64))], ["v_one_col"]),
                  helper.make_node("Mul", ["v_one_col", const("v_zero", np.float32(0.0))], ["v_zeros"]),
                  helper.make_node("Add", ["v_zeros", const("v_one", np.float32(1.0))], ["v_obj"]),
                  helper.make_node("Slice", ["v_t", const("v_b0", np.array([0], np.int64)),
                                             const("v_b4", np.array([4], np.int64)), "v_ax"], ["v_box"]),
                  helper.make_node("Slice", ["v_t", "v_b4", const("v_end", np.array([4 + classes], np.int64)),
                                             "v_ax"], ["v_cls"]),
                  helper.make_node("Concat", ["v_box", "v_obj", "v_cls"], ["v_cat" if bake_batch else old], axis=2)]
        if bake_batch:
            nodes.append(helper.make_node("Reshape", ["v_cat", const("v_shape", np.array([1, -1, 5 + classes],
                                                                                        np.int64))], [old]))
        g.node.extend(nodes)
        g.initializer.extend(inits)
        del g.output[:]
        g.output.append(helper.make_tensor_value_info(old, TensorProto.FLOAT, ["batch", "anchors", 5 + classes]))
    elif variant == "end2end":
        old = _rename_output(model, "v8_out")
        k = 100 * classes  # NMS keeps at most 100 per class: every kept row has a place
        nodes += [
            helper.make_node("Slice", ["v8_out", const("e_b0", np.array([0], np.int64)),
                                       const("e_b4", np.array([4], np.int64)), const("e_ax1", np.array([1], np.int64))],
                             ["e_cxcywh"]),  # [B, 4, N]
            helper.make_node("Slice", ["v8_out", "e_b4", const("e_end", np.array([4 + classes], np.int64)), "e_ax1"],
                             ["e_scores"]),  # [B, C, N]
            # cx, cy, w, h -> x1, y1, x2, y2 with a 4x4 matrix: [B, N, 4]
            helper.make_node("Transpose", ["e_cxcywh"], ["e_cxcywh_t"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["e_cxcywh_t", const("e_m", np.array(
                [[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]], np.float32))], ["e_xyxy"]),
            helper.make_node("NonMaxSuppression", ["e_xyxy", "e_scores", const("e_k", np.array([100], np.int64)),
                                                   const("e_iou", np.array([0.5], np.float32)),
                                                   const("e_thr", np.array([0.05], np.float32))], ["e_sel"]),
            # e_sel [M, 3]: batch, class, anchor -> per selected: box, score, class; scattered per image
            helper.make_node("Gather", ["e_sel", const("e_c0", np.array(0, np.int64))], ["e_bi"], axis=1),
            helper.make_node("Gather", ["e_sel", const("e_c1", np.array(1, np.int64))], ["e_ci"], axis=1),
            helper.make_node("Gather", ["e_sel", const("e_c2", np.array(2, np.int64))], ["e_ai"], axis=1),
            helper.make_node("Unsqueeze", ["e_bi", const("e_u1", np.array([1], np.int64))], ["e_bi1"]),
            helper.make_node("Unsqueeze", ["e_ai", "e_u1"], ["e_ai1"]),
            helper.make_node("Unsqueeze", ["e_ci", "e_u1"], ["e_ci1"]),
            helper.make_node("Concat", ["e_bi1", "e_ai1"], ["e_ba"], axis=1),
            helper.make_node("GatherND", ["e_xyxy", "e_ba"], ["e_sel_box"]),  # [M, 4]
            helper.make_node("Concat", ["e_bi1", "e_ci1", "e_ai1"], ["e_bca"], axis=1),
            helper.make_node("GatherND", ["e_scores", "e_bca"], ["e_sel_score"]),  # [M]
            helper.make_node("Unsqueeze", ["e_sel_score", "e_u1"], ["e_sel_score1"]),
            helper.make_node("Cast", ["e_ci1"], ["e_cls_f"], to=TensorProto.FLOAT),
            helper.make_node("Concat", ["e_sel_box", "e_sel_score1", "e_cls_f"], ["e_rows"], axis=1),  # [M, 6]
            # rank of each selected row within its image: rows are ordered by batch, so rank = i - first(i's batch)
            helper.make_node("Shape", ["e_xyxy"], ["e_shape"]),
            helper.make_node("Gather", ["e_shape", const("e_z", np.array([0], np.int64))], ["e_B"]),
            helper.make_node("Concat", ["e_B", const("e_kdim", np.array([k, 6], np.int64))], ["e_out_shape"], axis=0),
            helper.make_node("ConstantOfShape", ["e_out_shape"], ["e_empty"],
                             value=numpy_helper.from_array(np.array([0.0], np.float32))),
            helper.make_node("Shape", ["e_sel"], ["e_sel_shape"]),
            helper.make_node("Gather", ["e_sel_shape", "e_z"], ["e_M"]),
            helper.make_node("Squeeze", ["e_M", "e_z"], ["e_M0"]),
            helper.make_node("Range", [const("e_r0", np.array(0, np.int64)), "e_M0",
                                       const("e_r1", np.array(1, np.int64))], ["e_i"]),
            helper.make_node("Unsqueeze", ["e_bi", "e_z"], ["e_bi_row"]),  # [1, M]
            helper.make_node("Unsqueeze", ["e_bi", "e_u1"], ["e_bi_col"]),  # [M, 1]
            helper.make_node("Less", ["e_bi_row", "e_bi_col"], ["e_before"]),  # j's batch < i's batch
            helper.make_node("Cast", ["e_before"], ["e_before_i"], to=TensorProto.INT64),
            helper.make_node("ReduceSum", ["e_before_i", "e_u1"], ["e_first"], keepdims=0),
            helper.make_node("Sub", ["e_i", "e_first"], ["e_rank"]),
            helper.make_node("Unsqueeze", ["e_rank", "e_u1"], ["e_rank1"]),
            helper.make_node("Concat", ["e_bi1", "e_rank1"], ["e_dst"], axis=1),
            helper.make_node("ScatterND", ["e_empty", "e_dst", "e_rows"], [old]),
        ]
        g.node.extend(nodes)
        g.initializer.extend(inits)
        del g.output[:]
        g.output.append(helper.make_tensor_value_info(old, TensorProto.FLOAT, ["batch", k, 6]))
    elif variant != "yolov8":
        raise ValueError(f"unknown variant {variant!r}")
    if batch is not None:
        for value in [*g.input, *g.output]:
            dims = value.type.tensor_type.shape.dim
            dims[0].Clear()
            dims[0].dim_value = batch
    del g.value_info[:]
    if names:
        size = g.input[0].type.tensor_type.shape.dim[2].dim_value or g.input[0].type.tensor_type.shape.dim[1].dim_value
        for key, value in (("names", repr(dict(enumerate(names)))), ("imgsz", f"[{size}, {size}]"), ("stride", "32"),
                           ("task", "detect")):
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)
