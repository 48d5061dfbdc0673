"""ByteTrack (Zhang et al., ECCV 2022) for one camera, vectorised with numpy.

Why our own and not a library: supervision's ByteTrack keeps one Python object (and one Kalman
filter) per track and pulls in matplotlib/opencv-python/pillow; norfair matches by distance,
not IoU, and is slower per track; boxmot brings torch. Here every track of the camera lives in a
few arrays, so one frame is a fixed number of numpy calls however many tracks there are
(docs/architecture.md, Analytics; `pipeline bench --stage analytics` measures it).

Per frame: predict every track with a constant-velocity Kalman filter on (cx, cy, aspect, h)
(ByteTrack's noise model), then
1. high-score detections (>= high_score) against every track (tracked, lost or new), cost
   1 - IoU * score, accepted up to 1 - match_iou;
2. low-score detections (low_score .. high_score) against the tracks tracked last frame and still
   unmatched, plain IoU >= low_match_iou (this recovers occluded objects whose score dropped);
3. unmatched high detections with score >= new_track_score start tracks (a new id at once);
   a new track not matched on its next frame is dropped (a one-frame false positive);
   a confirmed track not matched is lost, kept for lost_frames frames, then removed.
Different classes never match unless class_agnostic. Ids are per camera, from 1, never reused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.analytics.geometry import iou

# ByteTrack's Kalman noise: standard deviations relative to the box height
STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_FT = _F.T.copy()
# diagonal noise = (h * scale)^2 + constant, per state / measurement component
_Q_SCALE = np.array([STD_POSITION, STD_POSITION, 0, STD_POSITION, STD_VELOCITY, STD_VELOCITY, 0, STD_VELOCITY])
_Q_CONST = np.array([0, 0, 1e-4, 0, 0, 0, 1e-10, 0])
_R_SCALE = np.array([STD_POSITION, STD_POSITION, 0, STD_POSITION])
_R_CONST = np.array([0, 0, 1e-2, 0])
_P0_SCALE = np.array([2 * STD_POSITION, 2 * STD_POSITION, 0, 2 * STD_POSITION,
                      10 * STD_VELOCITY, 10 * STD_VELOCITY, 0, 10 * STD_VELOCITY])
_P0_CONST = np.array([0, 0, 1e-4, 0, 0, 0, 1e-10, 0])


@dataclass(frozen=True)
class TrackerSettings:
    high_score: float = 0.5
    low_score: float = 0.1
    new_track_score: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    lost_frames: int = 30
    max_tracks: int = 1000
    class_agnostic: bool = False


@dataclass(frozen=True)
class TrackUpdate:
    """What one frame did: a track id per detection (0: not tracked) and the tracks that ended."""

    track_ids: np.ndarray  # [M] int64
    ended: tuple[int, ...]


def _xyah(boxes: np.ndarray) -> np.ndarray:
    out = np.empty((len(boxes), 4))
    wh = boxes[:, 2:] - boxes[:, :2]
    np.maximum(wh[:, 1], 1e-3, out=wh[:, 1])
    out[:, :2] = boxes[:, :2] + wh * 0.5
    out[:, 2] = wh[:, 0] / wh[:, 1]
    out[:, 3] = wh[:, 1]
    return out


def _boxes(mean: np.ndarray) -> np.ndarray:
    out = np.empty((len(mean), 4))
    half = np.empty((len(mean), 2))
    half[:, 1] = mean[:, 3] * 0.5
    half[:, 0] = mean[:, 2] * half[:, 1]
    out[:, :2] = mean[:, :2] - half
    out[:, 2:] = mean[:, :2] + half
    return out


def _match(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal assignment; pairs costing more than `limit` are not matches."""
    if cost.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    rows, cols = linear_sum_assignment(cost)
    keep = cost[rows, cols] <= limit
    return rows[keep], cols[keep]


class ByteTracker:
    """All tracks of one camera. Not thread-safe: one camera's frames come in order from one thread."""

    def __init__(self, settings: TrackerSettings = TrackerSettings()) -> None:
        self.settings = settings
        self._next_id = 1
        self.ids = np.zeros(0, np.int64)
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 8, 8))
        self.cls = np.zeros(0, np.int64)
        self.missed = np.zeros(0, np.int64)  # frames since the last match (0: tracked this frame)
        self.confirmed = np.zeros(0, bool)  # matched on at least two frames

    def __len__(self) -> int:
        return len(self.ids)

    def fresh(self) -> "ByteTracker":
        """No tracks, the same settings, ids continuing after this one's (never reused)."""
        out = ByteTracker(self.settings)
        out._next_id = self._next_id
        return out

    def update(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> TrackUpdate:
        s = self.settings
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        classes = np.asarray(classes, np.int64).reshape(-1)
        n_det = len(boxes)
        det_track = np.full(n_det, -1, np.intp)  # index into the track arrays
        n = len(self.ids)
        if n:
            self._predict()
            track_boxes = _boxes(self.mean)
            overlap = iou(track_boxes, boxes)
            if not s.class_agnostic:
                overlap = np.where(self.cls[:, None] == classes[None, :], overlap, 0.0)
            matched_track = np.zeros(n, bool)
            high = np.flatnonzero(scores >= s.high_score)
            if len(high):
                r, c = _match(1.0 - overlap[:, high] * scores[high][None, :], 1.0 - s.match_iou)
                det_track[high[c]] = r
                matched_track[r] = True
            low = np.flatnonzero((scores >= s.low_score) & (scores < s.high_score))
            last_tracked = np.flatnonzero(~matched_track & (self.missed == 0) & self.confirmed)
            if len(low) and len(last_tracked):
                r, c = _match(1.0 - overlap[np.ix_(last_tracked, low)], 1.0 - s.low_match_iou)
                det_track[low[c]] = last_tracked[r]
                matched_track[last_tracked[r]] = True
            hit = det_track >= 0
            if hit.any():
                self._correct(det_track[hit], boxes[hit])
                self.cls[det_track[hit]] = classes[hit]
            self.confirmed |= matched_track
            self.missed = np.where(matched_track, 0, self.missed + 1)
        # births: unmatched confident detections
        born = np.flatnonzero((det_track < 0) & (scores >= s.new_track_score))
        track_ids = np.zeros(n_det, np.int64)
        if n:
            track_ids[det_track >= 0] = self.ids[det_track[det_track >= 0]]
        ended = self._prune()
        if len(born):
            new_ids = np.arange(self._next_id, self._next_id + len(born), dtype=np.int64)
            self._next_id += len(born)
            self._add(new_ids, boxes[born], classes[born])
            track_ids[born] = new_ids
            ended += self._cap()
        return TrackUpdate(track_ids, tuple(ended))

    # ------------------------------------------------------------------ Kalman filter, all tracks at once

    def _predict(self) -> None:
        self.mean[:, 7] *= self.missed == 0  # a lost track's height stops changing (as ByteTrack)
        q = np.square(self.mean[:, 3:4] * _Q_SCALE) + _Q_CONST
        self.mean = self.mean @ _FT
        cov = _F @ self.cov @ _FT
        cov.reshape(-1, 64)[:, ::9] += q  # the diagonals
        self.cov = cov

    def _correct(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        mean, cov = self.mean[rows], self.cov[rows]
        z = _xyah(boxes)
        innovation_cov = cov[:, :4, :4] + np.eye(4) * (np.square(mean[:, 3:4] * _R_SCALE) + _R_CONST)[:, None, :]
        # gain K = P H^T S^-1, solved rather than inverted (S is symmetric)
        gain = np.linalg.solve(innovation_cov, cov[:, :4, :]).transpose(0, 2, 1)  # [k,8,4]
        self.mean[rows] = mean + np.einsum("kij,kj->ki", gain, z - mean[:, :4])
        self.cov[rows] = cov - gain @ innovation_cov @ gain.transpose(0, 2, 1)

    # ------------------------------------------------------------------ birth and death

    def _add(self, ids: np.ndarray, boxes: np.ndarray, classes: np.ndarray) -> None:
        k = len(ids)
        mean = np.zeros((k, 8))
        mean[:, :4] = _xyah(boxes)
        cov = np.zeros((k, 8, 8))
        cov.reshape(-1, 64)[:, ::9] = np.square(mean[:, 3:4] * _P0_SCALE) + _P0_CONST
        self.ids = np.concatenate([self.ids, ids])
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, cov])
        self.cls = np.concatenate([self.cls, classes])
        self.missed = np.concatenate([self.missed, np.zeros(k, np.int64)])
        self.confirmed = np.concatenate([self.confirmed, np.zeros(k, bool)])

    def _keep(self, keep: np.ndarray) -> list[int]:
        ended = self.ids[~keep].tolist()
        if ended:
            self.ids, self.mean, self.cov = self.ids[keep], self.mean[keep], self.cov[keep]
            self.cls, self.missed, self.confirmed = self.cls[keep], self.missed[keep], self.confirmed[keep]
        return ended

    def _prune(self) -> list[int]:
        """Drop new tracks missed on their second frame and lost tracks past lost_frames."""
        if not len(self.ids):
            return []
        dead = (self.missed > self.settings.lost_frames) | (~self.confirmed & (self.missed > 0))
        return self._keep(~dead) if dead.any() else []

    def _cap(self) -> list[int]:
        """Bounded memory: past max_tracks, the longest-lost tracks go first."""
        extra = len(self.ids) - self.settings.max_tracks
        if extra <= 0:
            return []
        order = np.argsort(-self.missed, kind="stable")
        keep = np.ones(len(self.ids), bool)
        keep[order[:extra]] = False
        return self._keep(keep)
