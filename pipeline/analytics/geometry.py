"""Plane geometry for zones and lines. Points are (x, y) with y down (image coordinates).

The anchor of a box is its bottom-centre (where an object touches the ground: the CCTV
convention); the daemon and the ground-truth derivation both use `anchors()`. Box overlap (`iou`)
serves the tracker and the accuracy tools.
"""
from __future__ import annotations

import numpy as np


def anchors(boxes: np.ndarray) -> np.ndarray:
    """[N,4] x1,y1,x2,y2 -> [N,2] bottom-centre points."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) * 0.5, boxes[:, 3]], axis=1)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """[N,2] points, [V,2] polygon -> [N] bool (even-odd ray casting; a point on the right or
    bottom edge counts as outside, on the left or top edge as inside, so tiling zones never
    both claim a point)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    px, py = points[:, 0:1], points[:, 1:2]
    x1, y1 = polygon[None, :, 0], polygon[None, :, 1]
    x2, y2 = polygon[None, np.r_[1:len(polygon), 0], 0], polygon[None, np.r_[1:len(polygon), 0], 1]
    straddles = (y1 > py) != (y2 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
    return (np.count_nonzero(straddles & (px < x_cross), axis=1) % 2) == 1


def side_of_line(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """[N,2] -> [N] in {-1, 0, 1}: +1 on the right-hand side walking from start to end
    (image coordinates, y down: clockwise), -1 on the left, 0 on the line."""
    d = end - start
    rel = np.asarray(points, dtype=np.float64).reshape(-1, 2) - start
    return np.sign(d[0] * rel[:, 1] - d[1] * rel[:, 0]).astype(np.int8)


def crosses_segment(p0: np.ndarray, p1: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """[N,2] moves p0 -> p1 (p0 and p1 on opposite sides of the infinite line): does the move
    pass through the segment start-end itself (ends included)? -> [N] bool."""
    d = end - start
    m = p1 - p0
    denom = m[:, 0] * d[1] - m[:, 1] * d[0]
    rel = p0 - start
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (m[:, 0] * rel[:, 1] - m[:, 1] * rel[:, 0]) / denom  # position along start-end
    return (denom != 0) & (t >= 0.0) & (t <= 1.0)


def _proper_intersection(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> bool:
    def orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> float:
        return float((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))

    def on_segment(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> bool:
        return bool(min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1]))

    o1, o2, o3, o4 = orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
    if o1 * o2 < 0 and o3 * o4 < 0:
        return True
    return ((o1 == 0 and on_segment(a, b, c)) or (o2 == 0 and on_segment(a, b, d))
            or (o3 == 0 and on_segment(c, d, a)) or (o4 == 0 and on_segment(c, d, b)))


def polygon_problem(points: np.ndarray) -> str | None:
    """Why this polygon cannot be a zone (None when it can): too few corners, zero area, or two
    edges that cross or touch (a self-intersecting polygon has no clear inside)."""
    n = len(points)
    if n < 3:
        return f"a zone needs at least 3 points, got {n}"
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbouring edges share a corner
            if _proper_intersection(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n]):
                return f"the polygon intersects itself (edge {i}-{i + 1} crosses edge {j}-{(j + 1) % n})"
    x, y = points[:, 0], points[:, 1]
    area = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    if abs(area) < 1e-12:
        return "the polygon has zero area"
    return None


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N,4] x [M,4] x1y1x2y2 -> [N,M] IoU."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
