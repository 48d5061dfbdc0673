"""YoloPostprocessor on hand-built [B, 4+C, N] outputs with known letterbox transforms."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.frame import Detection, Frame, InferenceResult, LetterboxTransform
from pipeline.postprocess import YoloPostprocessor

LABELS = ["person", "car", "dog"]
N = 50  # anchors


def frame(w: int, h: int, index: int = 0, camera: str = "cam0") -> Frame:
    return Frame(camera_id=camera, index=index, pts=index / 25, captured_at=1700000000.0 + index,
                 width=w, height=h, image=None)


def output(*anchors: tuple[tuple[float, float, float, float], int, float], n: int = N,
           classes: int = len(LABELS)) -> np.ndarray:
    """One frame's [4+C, N]: each anchor is ((x1, y1, x2, y2) in model pixels, class, score)."""
    out = np.zeros((4 + classes, n), dtype=np.float32)
    out[4:] = 0.01  # background: every class a little
    for i, ((x1, y1, x2, y2), c, s) in enumerate(anchors):
        out[:4, i] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        out[4 + c, i] = s
    return out


def run(pp: YoloPostprocessor, outs: list[np.ndarray], frames: list[Frame], size: int = 640):
    transforms = tuple(LetterboxTransform.fit(f.width, f.height, size) for f in frames)
    return pp(InferenceResult(frames=tuple(frames), transforms=transforms, output=np.stack(outs), formed_at=0.0))


def pp(score: float = 0.5, iou: float = 0.5, max_det: int = 300) -> YoloPostprocessor:
    return YoloPostprocessor(LABELS, score_threshold=score, iou_threshold=iou, max_detections=max_det)


def test_square_source_maps_one_to_one_and_fields_are_python_types() -> None:
    [fd] = run(pp(), [output(((10.04, 20.0, 110.0, 220.0), 1, 0.876543))], [frame(640, 640, index=7)])
    assert (fd.camera_id, fd.index, fd.pts, fd.width, fd.height) == ("cam0", 7, 7 / 25, 640, 640)
    assert fd.captured_at == 1700000007.0
    assert fd.detections == (Detection("car", 1, 0.8765, (10.0, 20.0, 110.0, 220.0)),)
    d = fd.detections[0]
    assert type(d.score) is float and all(type(v) is float for v in d.box)


def test_score_threshold_is_strict() -> None:
    [fd] = run(pp(score=0.5), [output(((0, 0, 10, 10), 0, 0.5), ((100, 100, 110, 110), 0, 0.51))],
               [frame(640, 640)])
    assert [d.score for d in fd.detections] == [0.51]


def test_best_class_per_anchor_wins() -> None:
    out = output(((0, 0, 50, 50), 0, 0.6))
    out[4 + 2, 0] = 0.9  # the same anchor also scores "dog", higher
    [fd] = run(pp(), [out], [frame(640, 640)])
    assert [(d.label, d.class_id, d.score) for d in fd.detections] == [("dog", 2, 0.9)]


def test_nms_is_class_aware() -> None:
    a, b = (100, 100, 200, 200), (105, 105, 205, 205)  # IoU ~0.82
    [same] = run(pp(), [output((a, 0, 0.9), (b, 0, 0.8))], [frame(640, 640)])
    assert [(d.label, d.score) for d in same.detections] == [("person", 0.9)]
    [diff] = run(pp(), [output((a, 0, 0.9), (b, 1, 0.8))], [frame(640, 640)])
    assert [(d.label, d.score) for d in diff.detections] == [("person", 0.9), ("car", 0.8)]


def test_max_detections_keeps_the_best_in_score_order() -> None:
    anchors = [((i * 60.0, 0.0, i * 60.0 + 50, 50.0), 0, 0.6 + i * 0.03) for i in range(10)]
    [fd] = run(pp(max_det=3), [output(*anchors)], [frame(640, 640)])
    assert [d.score for d in fd.detections] == [0.87, 0.84, 0.81]


def test_1280x720_into_640_maps_through_the_top_padding() -> None:
    t = LetterboxTransform.fit(1280, 720, 640)
    assert (t.pad_x, t.pad_y, t.resized_width, t.resized_height) == (0, 140, 640, 360)
    [fd] = run(pp(), [output(((100, 140 + 50, 200, 140 + 100), 0, 0.9))], [frame(1280, 720)])
    assert fd.detections[0].box == (200.0, 100.0, 400.0, 200.0)


def test_768x576_into_640_scales_by_five_sixths() -> None:
    t = LetterboxTransform.fit(768, 576, 640)
    assert (t.pad_x, t.pad_y, t.resized_width, t.resized_height) == (0, 80, 640, 480)
    [fd] = run(pp(), [output(((100, 80 + 40, 300, 80 + 240), 0, 0.9))], [frame(768, 576)])
    assert fd.detections[0].box == (120.0, 48.0, 360.0, 288.0)


def test_boxes_are_clipped_and_boxes_wholly_in_padding_dropped() -> None:
    overhanging = ((-20, 100, 60, 160), 0, 0.9)          # left of the image and into the top padding
    in_padding = ((300, 10, 400, 120), 1, 0.95)          # y 10..120 is all top padding for 1280x720
    bottom = ((500, 480, 700, 520), 2, 0.8)              # runs into the bottom padding and off the right
    [fd] = run(pp(), [output(overhanging, in_padding, bottom)], [frame(1280, 720)])
    assert [(d.label, d.box) for d in fd.detections] == [
        ("person", (0.0, 0.0, 120.0, 40.0)),
        ("dog", (1000.0, 680.0, 1280.0, 720.0)),
    ]


def test_batch_keeps_frame_order_and_each_frame_uses_its_own_transform() -> None:
    box = ((100, 180, 200, 280), 0, 0.9)
    frames = [frame(1280, 720, index=0, camera="a"), frame(768, 576, index=5, camera="b"),
              frame(640, 640, index=9, camera="c")]
    out = run(pp(), [output(box), output(), output(box)], frames)
    assert [(fd.camera_id, fd.index) for fd in out] == [("a", 0), ("b", 5), ("c", 9)]
    assert out[0].detections[0].box == (200.0, 80.0, 400.0, 280.0)
    assert out[1].detections == ()
    assert out[2].detections[0].box == (100.0, 180.0, 200.0, 280.0)


def test_empty_output_gives_frames_without_detections() -> None:
    res = run(pp(), [output(), output()], [frame(640, 480, 0), frame(640, 480, 1)])
    assert [(fd.index, fd.detections) for fd in res] == [(0, ()), (1, ())]


def test_output_that_does_not_fit_the_labels_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"model output is \[1, 6, 50\]; expected \[1, 7, N\] .*3 labels"):
        run(pp(), [output(classes=2)], [frame(640, 640)])


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        YoloPostprocessor([], 0.5, 0.5)
    with pytest.raises(ValueError):
        YoloPostprocessor(LABELS, 0.5, 0.5, max_detections=0)
