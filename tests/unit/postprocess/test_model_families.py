"""A tiny real model of each other family (tests/support/model_families.py: YOLOX, YOLOv5, ultralytics
RT-DETR, TF OD API via tf2onnx), built with its real head conventions and run by ONNX Runtime,
decodes through the pipeline (format auto where the shapes say it) to the boxes a direct numpy
implementation of that family's own decoding computes from the same raw output.

References follow each project's code: YOLOX demo_postprocess + per-class greedy NMS; YOLOv5
non_max_suppression (objectness prefilter, obj x cls, xywh2xyxy, class offsets); ultralytics
RTDETRPredictor.postprocess (xywh2xyxy, max class score, boxes x image size: RT-DETR stretches);
D-FINE (the model itself scales boxes by orig_target_sizes: run with the picture's own size);
TF OD API (first num_detections rows, ymin/xmin/ymax/xmax x image size, 1-based classes).
Where the pipeline differs by design (boxes clipped to the picture before NMS) the reference does too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from pipeline.config import ModelConfig
from pipeline.frame import Frame, FrameBatch, InferenceResult
from pipeline.infer import create_backend
from pipeline.postprocess import DetectionPostprocessor
from pipeline.preprocess import ReferencePreprocessor
from tests.support.model_families import (
    build_tiny_dfine_onnx,
    build_tiny_rtdetr_onnx,
    build_tiny_tf_od_onnx,
    build_tiny_yolov5_onnx,
    build_tiny_yolox_onnx,
)

SIZE = 64
LABELS = ["a", "b", "c"]
THR, IOU = 0.3, 0.45


def textbook_nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """YOLOX's demo_utils.nms (the classic greedy loop)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort(kind="stable")[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thr)[0] + 1]
    return keep


def visible(boxes, scores, classes):
    """Boxes left with no area once clipped to the picture (wholly outside it) are not detections."""
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[ok], np.asarray(scores)[ok], np.asarray(classes)[ok]


def per_class_nms(boxes, scores, classes, size_wh):
    boxes = boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, size_wh[0])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, size_wh[1])
    boxes, scores, classes = visible(boxes, scores, classes)
    out = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        out += [(int(c), float(scores[idx[k]]), boxes[idx[k]]) for k in textbook_nms(boxes[idx], scores[idx], IOU)]
    return sorted(out, key=lambda d: -d[1])


def yolox_reference(raw: np.ndarray) -> list:
    outputs = raw[None].copy()
    grids, expanded = [], []
    for stride in (8, 16, 32):
        hsize = wsize = SIZE // stride
        xv, yv = np.meshgrid(np.arange(wsize), np.arange(hsize))
        grid = np.stack((xv, yv), 2).reshape(1, -1, 2)
        grids.append(grid)
        expanded.append(np.full((*grid.shape[:2], 1), stride))
    grids, expanded = np.concatenate(grids, 1), np.concatenate(expanded, 1)
    outputs[..., :2] = (outputs[..., :2] + grids) * expanded
    outputs[..., 2:4] = np.exp(outputs[..., 2:4]) * expanded
    pred = outputs[0]
    scores = pred[:, 4:5] * pred[:, 5:]
    cx, cy, w, h = pred[:, :4].T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    cls = scores.argmax(1)
    best = scores[np.arange(len(cls)), cls]
    ok = best > THR
    return per_class_nms(boxes[ok], best[ok], cls[ok], (SIZE, SIZE))


def yolov5_reference(raw: np.ndarray) -> list:
    x = raw[raw[:, 4] > THR].copy()
    x[:, 5:] *= x[:, 4:5]
    cx, cy, w, h = x[:, :4].T
    box = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    j = x[:, 5:].argmax(1)
    conf = x[np.arange(len(j)), 5 + j]
    ok = conf > THR
    return per_class_nms(box[ok], conf[ok], j[ok], (SIZE, SIZE))


def rtdetr_reference(raw: np.ndarray, ow: int, oh: int) -> list:
    bbox, scores = raw[:, :4], raw[:, 4:]
    cx, cy, w, h = bbox.T
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    cls = scores.argmax(-1)
    score = scores[np.arange(len(cls)), cls]
    idx = score > THR
    xyxy = xyxy[idx] * np.array([ow, oh, ow, oh], np.float32)
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, ow)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, oh)
    xyxy, score, cls = visible(xyxy, score[idx], cls[idx])
    return sorted(zip(cls.tolist(), score.tolist(), xyxy), key=lambda d: -d[1])


def tf_reference(outs: dict[str, np.ndarray], ow: int, oh: int) -> list:
    n = int(outs["num_detections"][0])
    boxes = outs["detection_boxes"][0, :n]
    scores = outs["detection_scores"][0, :n]
    classes = outs["detection_classes"][0, :n].astype(int) - 1  # label maps count from 1
    ymin, xmin, ymax, xmax = boxes.T
    xyxy = np.stack([xmin * ow, ymin * oh, xmax * ow, ymax * oh], 1).clip(0, [ow, oh, ow, oh])
    ok = scores > THR
    xyxy, scores, classes = visible(xyxy[ok], scores[ok], classes[ok])
    return sorted(zip(classes.tolist(), scores.tolist(), xyxy), key=lambda d: -d[1])


@pytest.fixture(scope="module")
def pictures() -> list[np.ndarray]:
    import av

    from tests.support.daemon_harness import REPO

    out = []
    with av.open(str(REPO / "assets" / "demo" / "plaza_768x576.mp4")) as container:
        for i, f in enumerate(container.decode(video=0)):
            if i % 20 == 0:
                out.append(f.to_ndarray(format="rgb24"))
            if len(out) == 3:
                return out
    return out


def run_pipeline(path: Path, pictures: list[np.ndarray], **model) -> tuple[str, list, np.ndarray]:
    model = {"labels": LABELS, **model}
    cfg = ModelConfig(path=path, score_threshold=THR, iou_threshold=IOU, **model)
    with create_backend(cfg, 4, "cpu", intra_op_threads=1) as backend:
        spec = backend.model_spec
        pre = ReferencePreprocessor(spec.input.size, backend.input_dtype, 4, convention=spec.convention())
        frames = tuple(Frame(camera_id="c", index=i, pts=None, captured_at=0.0, width=p.shape[1], height=p.shape[0],
                             image=p) for i, p in enumerate(pictures))
        tensors = pre(FrameBatch(frames=frames, formed_at=0.0, oldest_wait_s=0.0))
        result: InferenceResult = backend.infer(tensors)
        want_layout = "candidates" if cfg.max_candidates and spec.format != "end2end" else "anchors"
        assert result.layout.value == want_layout
        detections = DetectionPostprocessor.for_model(spec, THR, IOU)(result)
        return spec.describe(backend.batch_note), detections, tensors.tensor


def assert_same(got, want) -> None:
    assert len(got.detections) == len(want), (got.detections, want)
    for d, (c, s, box) in zip(got.detections, want):
        assert d.class_id == c and d.label == LABELS[c]
        assert abs(d.score - s) <= 1e-3
        np.testing.assert_allclose(d.box, box, atol=0.06)  # published boxes are rounded to 0.1 px


def square(pictures: list[np.ndarray]) -> list[np.ndarray]:
    """SIZE x SIZE crops: the letterbox is then the identity and the raw output is in picture pixels."""
    return [np.ascontiguousarray(p[100:100 + SIZE, 200:200 + SIZE]) for p in pictures]


@pytest.mark.parametrize("max_candidates", [None, 1024])  # host decode, or device-side selection in the graph
def test_yolox(tmp_path: Path, pictures, max_candidates) -> None:
    path = build_tiny_yolox_onnx(tmp_path / "yolox.onnx", num_classes=3, input_size=SIZE)
    crops = square(pictures)
    # [B, 84, 8]: yolov5 or yolox, a user choice
    line, got, x = run_pipeline(path, crops, format="yolox", max_candidates=max_candidates)
    assert line.startswith("model: yolox layout, 3 classes (config), input 64x64 NCHW float32 RGB"), line
    raw = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert sum(len(g.detections) for g in got) > 0
    for g, r in zip(got, raw, strict=True):
        assert_same(g, yolox_reference(r))


@pytest.mark.parametrize("max_candidates", [None, 1024])
def test_yolov5_auto_from_anchor_count_and_names(tmp_path: Path, pictures, max_candidates) -> None:
    path = build_tiny_yolov5_onnx(tmp_path / "v5.onnx", num_classes=3, input_size=SIZE, names=LABELS)
    crops = square(pictures)
    line, got, x = run_pipeline(path, crops, max_candidates=max_candidates)  # auto: 3 anchors per cell -> yolov5
    assert line.startswith("model: yolov5 layout, 3 classes (config)"), line
    raw = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert sum(len(g.detections) for g in got) > 0
    for g, r in zip(got, raw, strict=True):
        assert_same(g, yolov5_reference(r))


def test_rtdetr_stretch_with_names_from_metadata(tmp_path: Path, pictures) -> None:
    path = build_tiny_rtdetr_onnx(tmp_path / "rtdetr.onnx", num_classes=3, input_size=SIZE, names=LABELS)
    line, got, x = run_pipeline(path, pictures, input={"resize": "stretch"}, labels=[])  # names from metadata
    assert line.startswith("model: end2end layout, 3 classes (metadata), input 64x64 NCHW float32 RGB stretch"), line
    raw = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert sum(len(g.detections) for g in got) > 0
    for g, r, p in zip(got, raw, pictures, strict=True):
        assert_same(g, rtdetr_reference(r, p.shape[1], p.shape[0]))


def test_tf_object_detection_api_export(tmp_path: Path, pictures) -> None:
    path = build_tiny_tf_od_onnx(tmp_path / "ssd.onnx", num_classes=3, input_size=SIZE)
    line, got, x = run_pipeline(path, pictures, input={"resize": "stretch"})
    assert line.startswith("model: end2end layout, 3 classes (config), input 64x64 NHWC uint8 RGB stretch, "
                           "batch 1 static"), line
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert sum(len(g.detections) for g in got) > 0
    for g, xi, p in zip(got, x, pictures, strict=True):
        outs = dict(zip(names, session.run(None, {"input_tensor": xi[None]})))
        assert_same(g, tf_reference(outs, p.shape[1], p.shape[0]))


def test_dfine_with_orig_target_sizes(tmp_path: Path, pictures) -> None:
    path = build_tiny_dfine_onnx(tmp_path / "dfine.onnx", num_classes=3, input_size=SIZE)
    line, got, x = run_pipeline(path, pictures, input={"resize": "stretch"})
    assert line.startswith("model: end2end layout, 3 classes (config), input 64x64 NCHW float32 RGB stretch "
                           "(+ orig_target_sizes fed 64x64), dynamic batch"), line
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sum(len(g.detections) for g in got) > 0
    for g, xi, p in zip(got, x, pictures, strict=True):  # D-FINE's own way: boxes in the picture's size
        h, w = p.shape[:2]
        labels, boxes, scores = session.run(None, {"images": xi[None], "orig_target_sizes": np.array([[w, h]])})
        ok = scores[0] > THR
        xyxy = boxes[0][ok].clip(0, [w, h, w, h])
        kept, sc, cl = visible(xyxy, scores[0][ok], labels[0][ok])
        assert_same(g, sorted(zip(cl.tolist(), sc.tolist(), kept), key=lambda d: -d[1]))
