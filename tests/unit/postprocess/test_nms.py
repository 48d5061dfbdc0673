"""class_aware_nms against the textbook greedy loop, on sizes that exercise every code path."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.postprocess.nms import BLOCK, GROUP, class_aware_nms


def textbook_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, thr: float, max_keep: int) -> list[int]:
    def area(b: np.ndarray) -> float:
        return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])

    keep: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: (-scores[i], i)):
        a = boxes[i]
        suppressed = False
        for j in keep:
            if classes[j] != classes[i]:
                continue
            b = boxes[j]
            inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            if inter / (area(a) + area(b) - inter) > thr:
                suppressed = True
                break
        if not suppressed:
            keep.append(i)
    return keep[:max_keep]


def random_boxes(rng: np.random.Generator, k: int, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xy = rng.random((k, 2)) * 300
    wh = 5 + rng.random((k, 2)) * 80
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.random(k).astype(np.float32).round(2)  # rounding makes ties, which must break by index
    return boxes, scores, rng.integers(classes, size=k)


@pytest.mark.parametrize("k, classes, max_keep", [
    (1, 1, 5),
    (40, 3, 300),                 # one packed group, several classes
    (GROUP + 50, 2, 300),         # classes bigger than a group
    (BLOCK * 2 + 17, 1, 10_000),  # one class over several blocks
    (900, 20, 300),               # many small classes packed into groups
    (1500, 4, 7),                 # early stop: the best prefix already has max_keep survivors
])
def test_matches_textbook_greedy_nms(k: int, classes: int, max_keep: int) -> None:
    rng = np.random.default_rng(k)
    boxes, scores, cls = random_boxes(rng, k, classes)
    got = class_aware_nms(boxes, scores, cls, 0.45, max_keep).tolist()
    assert got == textbook_nms(boxes.astype(np.float64), scores, cls, 0.45, max_keep)


def test_same_class_overlap_is_suppressed_other_class_is_kept() -> None:
    boxes = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [5, 5, 105, 105]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    assert class_aware_nms(boxes, scores, np.array([0, 0, 1]), 0.5, 10).tolist() == [0, 2]
    assert class_aware_nms(boxes, scores, np.array([0, 1, 2]), 0.5, 10).tolist() == [0, 1, 2]


def test_empty_input() -> None:
    assert class_aware_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int), 0.5, 10).size == 0
