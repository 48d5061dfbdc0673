"""ByteTracker: ids stay with objects through motion, crossings and short occlusions; a camera whose
objects leave keeps no tracks; ids are never reused."""
from __future__ import annotations

import numpy as np

from pipeline.analytics.tracker import ByteTracker, TrackerSettings


def box(x: float, y: float, w: float = 40, h: float = 100) -> list[float]:
    return [x, y, x + w, y + h]


def step(tracker: ByteTracker, boxes: list[list[float]], scores: list[float] | None = None,
         classes: list[int] | None = None) -> list[int]:
    n = len(boxes)
    return tracker.update(np.array(boxes, float).reshape(-1, 4), np.array(scores or [0.9] * n),
                          np.array(classes or [0] * n)).track_ids.tolist()


def test_moving_objects_keep_their_ids() -> None:
    t = ByteTracker()
    first = step(t, [box(0, 0), box(500, 0)])
    assert first == [1, 2]
    for k in range(1, 60):  # 8 px/frame each way: boxes 40 wide overlap little frame to frame
        assert step(t, [box(8 * k, 0), box(500 - 8 * k, 0)]) == [1, 2], k


def test_crossing_objects_of_different_classes_do_not_swap() -> None:
    t = ByteTracker()
    for k in range(60):
        ids = step(t, [box(5 * k, 50), box(300 - 5 * k, 60)], classes=[0, 1])
        assert ids == [1, 2], k


def test_low_score_detection_keeps_an_occluded_track_alive() -> None:
    t = ByteTracker()
    for k in range(10):
        step(t, [box(10 * k, 0)])
    # half hidden: the detector's score drops below high_score; the second round keeps the id
    assert step(t, [box(100, 0)], scores=[0.3]) == [1]
    assert step(t, [box(110, 0)], scores=[0.2]) == [1]
    # a low-score detection never starts a track
    assert step(t, [box(120, 0), box(600, 300)], scores=[0.9, 0.3]) == [1, 0]


def test_lost_track_is_recovered_after_a_gap() -> None:
    t = ByteTracker(TrackerSettings(lost_frames=10))
    for k in range(20):
        step(t, [box(6 * k, 0)])
    for k in range(20, 26):  # fully hidden for 6 frames, keeps moving
        assert step(t, []) == []
    assert step(t, [box(6 * 26, 0)]) == [1]


def test_one_frame_false_positive_is_dropped_and_its_id_not_reused() -> None:
    t = ByteTracker()
    step(t, [box(0, 0)])
    assert step(t, [box(2, 0), box(400, 400)]) == [1, 2]  # 2: a one-frame ghost
    assert step(t, [box(4, 0)]) == [1]
    assert len(t) == 1  # the ghost went at once, not after lost_frames
    assert step(t, [box(6, 0), box(300, 300)]) == [1, 3]


def test_class_agnostic_keeps_the_id_when_the_label_flips() -> None:
    t = ByteTracker(TrackerSettings(class_agnostic=True))
    assert step(t, [box(0, 0)], classes=[0]) == [1]
    assert step(t, [box(3, 0)], classes=[2]) == [1]
    t = ByteTracker()
    step(t, [box(0, 0)], classes=[0])
    assert step(t, [box(3, 0)], classes=[2]) == [2]


def test_churn_keeps_tracks_bounded_and_ids_unique() -> None:
    """10,000 frames: every frame an object appears, each lives ~20 frames then leaves for good."""
    settings = TrackerSettings(lost_frames=30)
    t = ByteTracker(settings)
    rng = np.random.default_rng(1)
    alive: list[tuple[float, float, int]] = []  # x, y, frames left
    seen_ids: set[int] = set()
    peak = 0
    last_max = 0
    for k in range(10_000):
        alive = [(x + 4, y, left - 1) for x, y, left in alive if left > 0]
        alive += [(rng.uniform(0, 20000), rng.uniform(0, 20000), int(rng.integers(10, 30))) for _ in range(1)]
        ids = step(t, [box(x, y) for x, y, _ in alive])
        new = [i for i in ids if i and i not in seen_ids]
        assert all(i > last_max for i in new), "an id was reused"
        last_max = max([last_max, *new])
        seen_ids.update(ids)
        peak = max(peak, len(t))
    # objects alive at once (< 30) plus those lost within the last lost_frames frames (<= 31)
    assert peak <= 30 + 31, peak
    for _ in range(settings.lost_frames + 1):
        step(t, [])
    assert len(t) == 0


def test_max_tracks_caps_memory() -> None:
    t = ByteTracker(TrackerSettings(max_tracks=5))
    for k in range(20):
        step(t, [box(1000 * i, 0) for i in range(8)])
    assert len(t) == 5
