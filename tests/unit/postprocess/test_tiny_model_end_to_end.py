"""Image with a bright square -> reference letterbox -> tiny ONNX model (real onnxruntime)
-> YoloPostprocessor -> a detection around the square, in source pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ModelConfig
from pipeline.frame import Frame, FrameDetections, TensorBatch
from pipeline.infer import create_backend
from pipeline.postprocess import YoloPostprocessor
from pipeline.preprocess.reference import letterbox_reference
from tests.support.tiny_model import build_tiny_yolo_onnx

LABELS = ["red", "green"]  # the tiny model: class 0 = red channel mean, class 1 = green


def detect(model_path: Path, input_size: int, images: list[np.ndarray], score: float = 0.5,
           iou: float = 0.5) -> list[FrameDetections]:
    backend = create_backend(ModelConfig(path=model_path, labels=LABELS, input_size=input_size), 8, "cpu",
                             intra_op_threads=1)
    tensors, transforms = zip(*(letterbox_reference(img, input_size) for img in images))
    frames = tuple(Frame(f"cam{i}", i, None, 0.0, img.shape[1], img.shape[0], img) for i, img in enumerate(images))
    result = backend.infer(TensorBatch(frames, tuple(transforms), np.stack(tensors), 0.0))
    return YoloPostprocessor(LABELS, score, iou, 100)(result)


def scene(w: int, h: int, x: int, y: int, side: int, colour: tuple[int, int, int]) -> np.ndarray:
    img = np.full((h, w, 3), 20, dtype=np.uint8)  # dark background scores ~0.08
    img[y:y + side, x:x + side] = colour
    return img


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


def test_square_is_found_where_it_is_with_its_colour(models: Path) -> None:
    # 256x192 -> 64: scale 1/4, 8 px of padding top and bottom. A 32 px square at (64, 96) lands
    # exactly on stride-8 cell (col 2, row 4) of the model input.
    model = build_tiny_yolo_onnx(models / "s8.onnx", num_classes=2, input_size=64, stride=8)
    white = scene(256, 192, 64, 96, 32, (255, 255, 255))
    green = scene(256, 192, 160, 32, 32, (0, 230, 0))
    blank = scene(256, 192, 0, 0, 0, (0, 0, 0))
    w_det, g_det, b_det = detect(model, 64, [white, green, blank])

    [d] = w_det.detections
    assert (d.label, d.class_id) == ("red", 0)  # white scores every class alike: the first wins
    assert d.score == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(d.box, (64, 96, 96, 128), atol=0.5)

    [d] = g_det.detections
    assert (d.label, d.score) == ("green", pytest.approx(230 / 255, abs=1e-3))
    np.testing.assert_allclose(d.box, (160, 32, 192, 64), atol=0.5)

    assert b_det.detections == ()  # background and letterbox padding (0.447) stay under 0.5


def test_overlapping_anchors_are_suppressed_by_nms(models: Path) -> None:
    # window 16, stride 8: anchor (row 4, col 4) sees model pixels x 28..44, y 28..44, i.e. source
    # x 112..176, y (28-8)*4..(44-8)*4 = 80..144. Its 4 edge neighbours see half the square
    # (score ~0.54 with the background) and overlap it with IoU 1/3; the diagonal ones see a
    # quarter (~0.31). None of their windows reach the letterbox padding (model rows 56..64).
    model = build_tiny_yolo_onnx(models / "w16.onnx", num_classes=2, input_size=64, stride=8, window=16)
    img = scene(256, 192, 112, 80, 64, (255, 255, 255))
    [loose] = detect(model, 64, [img], score=0.4, iou=0.5)
    assert len(loose.detections) == 5
    assert [d.score for d in loose.detections[1:]] == [pytest.approx(0.5 + 0.5 * 20 / 255, abs=1e-3)] * 4
    [tight] = detect(model, 64, [img], score=0.4, iou=0.3)
    [d] = tight.detections
    assert d.score == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(d.box, (112, 80, 176, 144), atol=0.5)


def test_1280x720_into_640(models: Path) -> None:
    # 1280x720 -> 640: scale 1/2, 140 px top padding. Stride-32 cell (col 10, row 10) covers model
    # x 320..352, y 320..352, i.e. source x 640..704, y (320-140)*2 = 360..424.
    model = build_tiny_yolo_onnx(models / "s32.onnx", num_classes=2, input_size=640, stride=32)
    [fd] = detect(model, 640, [scene(1280, 720, 640, 360, 64, (250, 40, 40))])
    [d] = fd.detections
    assert (d.label, fd.width, fd.height) == ("red", 1280, 720)
    np.testing.assert_allclose(d.box, (640, 360, 704, 424), atol=0.5)
