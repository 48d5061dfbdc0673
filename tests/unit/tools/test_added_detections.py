"""tools/bench/added_detections.py: K synthetic boxes join the model's on every frame, inside the frame,
the same per camera and frame each time, and moving from frame to frame (so a tracker follows them)."""
from __future__ import annotations

from pipeline.frame import Detection, FrameDetections
from pipeline.tools.bench.added_detections import AddedDetections


def frames(camera: str, indices: range, width: int = 1920, height: int = 1080) -> list[FrameDetections]:
    own = (Detection("person", 0, 0.9, (10.0, 10.0, 50.0, 90.0)),)
    return [FrameDetections(camera, i, i / 30.0, 0.0, width, height, own) for i in indices]


def test_every_frame_gets_the_models_detections_and_k_more_inside_it() -> None:
    added = AddedDetections(lambda batch: batch, 10)
    out = added(frames("a", range(5)) + frames("b", range(5), 640, 480))
    assert [len(fd.detections) for fd in out] == [11] * 10
    for fd in out:
        assert fd.detections[0].label == "person"  # the model's own come first, untouched
        for d in fd.detections[1:]:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= fd.width and 0 <= y1 < y2 <= fd.height, (fd.width, fd.height, d.box)


def test_a_cameras_boxes_repeat_for_the_same_frame_and_move_between_frames() -> None:
    added = AddedDetections(lambda batch: batch, 5)
    first = added(frames("a", range(3)))
    again = added(frames("a", range(3)))
    assert [fd.detections for fd in first] == [fd.detections for fd in again]
    assert first[0].detections[1:] != first[1].detections[1:]
    other = added(frames("b", range(1)))
    assert other[0].detections[1:] != first[0].detections[1:]  # each camera its own scene


def test_none_added_leaves_the_frames_alone() -> None:
    added = AddedDetections(lambda batch: batch, 0)
    assert [len(fd.detections) for fd in added(frames("a", range(2)))] == [1, 1]
