"""The demo detector re-exported by ONNX graph edits (tests/support/model_families.py) in the layouts
users bring: yolov8 with a static batch, yolov5-style [B, N, 5+C], end2end [B, K, 6] with the NMS in
the graph, and an NHWC uint8 BGR input; each static and dynamic. Every variant runs the real runtime
on frames of the three demo clips through the real DALI (cpu) preprocessor and must give the same
detections as the model as shipped: same labels, boxes within 0.5 px, scores within 1e-3.
"""
from __future__ import annotations

from pathlib import Path

import av
import pytest

from pipeline.config import ModelConfig
from pipeline.frame import Frame, FrameBatch, FrameDetections
from pipeline.infer import create_backend
from pipeline.postprocess import DetectionPostprocessor
from pipeline.preprocess import create_preprocessor
from tests.support.daemon_harness import REPO
from tests.support.model_families import demo_variant

DEMO = REPO / "assets" / "demo"
LABELS = (DEMO / "labels.txt").read_text().split()
CLIPS = ("street_1280x720", "plaza_768x576", "yard_640x480")
MAX_BATCH = 8


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    out = []
    for clip in CLIPS:
        with av.open(str(DEMO / f"{clip}.mp4")) as container:
            for i, picture in enumerate(container.decode(video=0)):
                if i % 15 == 0:
                    image = picture.to_ndarray(format="rgb24")
                    out.append(Frame(camera_id=clip, index=i, pts=None, captured_at=0.0, width=image.shape[1],
                                     height=image.shape[0], image=image))
                if i >= 60:
                    break
    return out


def detect(path: Path, frames: list[Frame], **model: object) -> tuple[str, list[FrameDetections]]:
    model = {"max_candidates": None, "labels": LABELS, **model}  # the full output decoded on the host unless asked
    cfg = ModelConfig(path=path, score_threshold=0.4, iou_threshold=0.5, **model)
    with create_backend(cfg, MAX_BATCH, "cpu", intra_op_threads=1) as backend:
        spec = backend.model_spec
        pre = create_preprocessor("cpu", spec.input.size, backend.input_dtype, MAX_BATCH, 1,
                                  convention=spec.convention())
        post = DetectionPostprocessor.for_model(spec, cfg.score_threshold, cfg.iou_threshold, cfg.max_detections)
        results: list[FrameDetections] = []
        for i in range(0, len(frames), MAX_BATCH):
            batch = FrameBatch(frames=tuple(frames[i:i + MAX_BATCH]), formed_at=0.0, oldest_wait_s=0.0)
            result = backend.infer(pre(batch))
            assert result.layout.value == ("candidates" if cfg.max_candidates and spec.format != "end2end"
                                           else "anchors")
            results += post(result)
        return spec.describe(backend.batch_note), results


@pytest.fixture(scope="module")
def shipped(frames: list[Frame]) -> list[FrameDetections]:
    line, results = detect(DEMO / "detector.onnx", frames)
    assert line.startswith("model: yolov8 layout, 3 classes (config), input 320x320 NCHW float32 RGB")
    assert sum(len(r.detections) for r in results) > 50  # the clips are busy: a real comparison
    return results


def same(a, b) -> bool:
    return (a.label == b.label and abs(a.score - b.score) <= 1e-3
            and max(abs(x - y) for x, y in zip(a.box, b.box)) <= 0.5)


VARIANTS = [  # variant, static batch, model config, what the start-up line must say
    ("yolov8", 1, {}, "yolov8 layout, 3 classes (config), input 320x320 NCHW float32 RGB letterbox pad 114, "
                      "batch 1 static -> made dynamic"),
    ("yolov5", None, {"format": "yolov5"}, "yolov5 layout, 3 classes (config), input 320x320 NCHW float32"),
    ("yolov5", 1, {"format": "yolov5"}, "yolov5 layout, 3 classes (config), input 320x320 NCHW float32 RGB "
                                        "letterbox pad 114, batch 1 static -> made dynamic"),
    # device-side candidate selection (infer/candidates.py) on yolov5 rows: the same detections
    ("yolov5", None, {"format": "yolov5", "max_candidates": 1024}, "yolov5 layout, 3 classes (config)"),
    ("yolov5-baked", 1, {"format": "yolov5"}, "yolov5 layout, 3 classes (config), input 320x320 NCHW float32 RGB "
                                              "letterbox pad 114, batch 1 static -> per-frame calls"),
    ("nhwc-bgr-uint8", None, {"input": {"channels": "BGR"}}, "input 320x320 NHWC uint8 BGR letterbox pad 114"),
    ("nhwc-bgr-uint8", 1, {"input": {"channels": "BGR"}}, "NHWC uint8 BGR letterbox pad 114, batch 1 static -> "
                                                          "made dynamic"),
]


@pytest.mark.parametrize("variant,batch,model,says", VARIANTS, ids=[f"{v[0]}-{v[1] or 'dyn'}{'-cand' if 'max_candidates' in v[2] else ''}" for v in VARIANTS])
def test_reexport_gives_the_same_detections(tmp_path: Path, frames, shipped, variant, batch, model, says) -> None:
    kind, baked = variant.removesuffix("-baked"), variant.endswith("-baked")
    path = demo_variant(DEMO / "detector.onnx", tmp_path / f"{variant}.onnx", kind, batch, bake_batch=bool(baked))
    line, results = detect(path, frames, **model)
    assert says in line, line
    for want, got in zip(shipped, results, strict=True):
        assert len(got.detections) == len(want.detections), (want.camera_id, want.index)
        assert all(same(a, b) for a, b in zip(want.detections, got.detections)), (want, got)


@pytest.mark.parametrize("batch", [None, 1])
def test_end2end_reexport_matches_except_where_nms_sees_unclipped_boxes(tmp_path: Path, frames, shipped,
                                                                          batch) -> None:
    """The end2end variant runs ONNX NonMaxSuppression in the graph, on boxes in model pixels; the
    yolov8 path runs NMS on boxes clipped to the picture. So every shipped detection must come back
    exactly, and any extra one must be a box cut by the picture's edge (where clipping changes IoU)."""
    path = demo_variant(DEMO / "detector.onnx", tmp_path / "e2e.onnx", "end2end", batch)
    line, results = detect(path, frames)  # format auto: [B, 300, 6] with 3 classes is end2end
    assert line.startswith("model: end2end layout, 3 classes (config)"), line
    assert line.endswith("dynamic batch" if batch is None else "batch 1 static -> made dynamic"), line
    extra = 0
    for want, got in zip(shipped, results, strict=True):
        rest = list(got.detections)
        for a in want.detections:
            match = next((b for b in rest if same(a, b)), None)
            assert match is not None, (want.camera_id, want.index, a, got.detections)
            rest.remove(match)
        for b in rest:
            x1, y1, x2, y2 = b.box
            assert x1 <= 0 or y1 <= 0 or x2 >= got.width or y2 >= got.height, (got.camera_id, got.index, b)
        extra += len(rest)
    assert extra <= 2


def test_labels_from_the_models_metadata(tmp_path: Path, frames, shipped) -> None:
    """An ultralytics-style file names its classes: model.labels may be left out (the demo detector,
    static batch 1, with names/imgsz/stride/task written as ultralytics writes them)."""
    path = demo_variant(DEMO / "detector.onnx", tmp_path / "named.onnx", "yolov8", 1, names=LABELS)
    line, results = detect(path, frames, labels=[])
    assert line == ("model: yolov8 layout, 3 classes (metadata), input 320x320 NCHW float32 RGB letterbox pad 114, "
                    "batch 1 static -> made dynamic")
    for want, got in zip(shipped, results, strict=True):
        assert len(got.detections) == len(want.detections)
        assert all(same(a, b) for a, b in zip(want.detections, got.detections))
