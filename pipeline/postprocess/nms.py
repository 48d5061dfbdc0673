"""Greedy, class-aware non-maximum suppression in numpy.

Same result as the textbook loop (highest score first; drop every later box of the same class
whose IoU with a kept box exceeds the threshold), computed with vectorised IoU matrices:

- Candidates are sorted by class, best first within a class. Consecutive classes are packed
  into groups of at most GROUP boxes; a group is resolved with one IoU matrix masked to
  same-class pairs. This keeps matrices small (not K x K) and Python-level steps few (not one
  per class).
- Only the best candidates are examined while they already yield max_keep survivors (see
  class_aware_nms), so thousands of anchors over the score threshold cost little more than hundreds.
- A class with more than GROUP boxes is resolved on its own in blocks of BLOCK: a block is
  checked against everything kept so far, then inside itself. It stops once `max_keep` boxes
  are kept, which bounds the work when thousands of anchors pass the score threshold.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK = 512  # 512 x 512 IoU matrix: 1 MB of float32
GROUP = 256  # must be <= BLOCK: a packed group is resolved as a single block


def _overlaps(a: np.ndarray, b: np.ndarray, thr: float) -> np.ndarray:
    """a [5,M], b [5,K] with rows x1,y1,x2,y2,area: [M,K] bool, IoU > thr (no division)."""
    w = np.minimum.outer(a[2], b[2])
    w -= np.maximum.outer(a[0], b[0])
    np.maximum(w, 0, out=w)
    h = np.minimum.outer(a[3], b[3])
    h -= np.maximum.outer(a[1], b[1])
    np.maximum(h, 0, out=h)
    w *= h  # intersection
    union = np.add.outer(a[4], b[4])
    union -= w
    union *= thr
    return w > union


def _resolve_block(over: np.ndarray) -> np.ndarray:
    """over [k,k]: box i suppresses later box j. Greedy survivors (bool)."""
    later = np.triu(over, k=1)
    survive = np.ones(len(over), dtype=bool)
    for i in np.flatnonzero(later.any(axis=1)):  # boxes that overlap nothing later suppress nothing
        if survive[i]:
            survive &= ~later[i]
    return survive


def _greedy_one_class(rows: np.ndarray, thr: float, max_keep: int) -> np.ndarray:
    """rows [5,K] of one class, best first: positions of kept boxes, at most max_keep."""
    kept: list[np.ndarray] = []
    kept_rows = rows[:, :0]
    total = 0
    for start in range(0, rows.shape[1], BLOCK):
        blk = rows[:, start:start + BLOCK]
        idx = np.arange(blk.shape[1])
        if total:
            idx = np.flatnonzero(~_overlaps(blk, kept_rows, thr).any(axis=1))
            blk = blk[:, idx]
        chosen = np.flatnonzero(_resolve_block(_overlaps(blk, blk, thr)))[:max_keep - total]
        kept.append(idx[chosen] + start)
        kept_rows = np.concatenate([kept_rows, blk[:, chosen]], axis=1)
        total += chosen.size
        if total >= max_keep:
            break
    return np.concatenate(kept)


def _groups(class_sorted: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end) ranges: whole classes packed up to GROUP boxes, or one big class alone."""
    cuts = np.flatnonzero(class_sorted[1:] != class_sorted[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(class_sorted)]
    start = 0
    for i in range(1, len(bounds)):
        end, nxt = bounds[i], bounds[i + 1] if i + 1 < len(bounds) else None
        if nxt is None or nxt - start > GROUP or end - start > GROUP:
            yield start, end
            start = end


def _nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, thr: float, max_keep: int) -> np.ndarray:
    order = np.lexsort((-scores, class_ids))  # by class, best first within a class; stable
    b = np.asarray(boxes, dtype=np.float32)[order].T
    rows = np.concatenate([b, ((b[2] - b[0]).clip(0) * (b[3] - b[1]).clip(0))[None]])
    classes = class_ids[order]
    kept: list[np.ndarray] = []
    for start, end in _groups(classes):
        part = rows[:, start:end]
        if classes[start] == classes[end - 1]:
            kept.append(start + _greedy_one_class(part, thr, max_keep))
        else:  # several small classes: one matrix, only same-class pairs suppress
            c = classes[start:end]
            over = _overlaps(part, part, thr) & (c[:, None] == c[None, :])
            kept.append(start + np.flatnonzero(_resolve_block(over)))
    return order[np.concatenate(kept)]


def class_aware_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
                    max_keep: int) -> np.ndarray:
    """boxes [K,4] x1,y1,x2,y2: indices of kept boxes, highest score first (ties: lower index first)."""
    k = len(boxes)
    if k == 0 or max_keep <= 0:
        return np.empty(0, dtype=np.int64)
    class_ids = np.asarray(class_ids)
    by_score = np.argsort(-scores, kind="stable")
    # Greedy NMS decides each box from better boxes only, so running it on the best `take`
    # candidates gives exactly the full result's survivors among them. Once that prefix has
    # max_keep survivors the answer is known; otherwise widen it.
    take = max(4 * max_keep, GROUP)
    while True:
        prefix = by_score[:take]
        keep = prefix[_nms(boxes[prefix], scores[prefix], class_ids[prefix], iou_threshold, max_keep)]
        if len(keep) >= max_keep or take >= k:
            break
        take *= 4
    keep = keep[np.lexsort((keep, -scores[keep]))]
    return keep[:max_keep]
