"""Scoring detections against ground truth: matching, precision/recall and AP."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.tools.evaluate.detection_metrics import TruthBox, iou_matrix, load_truth, score_camera


def msg(frame: int, *dets: tuple[str, float, list[float]]) -> dict:
    return {"frame": frame, "detections": [{"label": l, "score": s, "box": b} for l, s, b in dets]}


def test_iou_matrix_known_values() -> None:
    a = np.array([[0, 0, 10, 10]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float)
    assert iou_matrix(a, b) == pytest.approx(np.array([[1.0, 50 / 150, 0.0]]))


def test_perfect_detections_score_one() -> None:
    truth = {0: [TruthBox("car", (0, 0, 10, 10))], 1: [TruthBox("person", (5, 5, 20, 40))]}
    s = score_camera("c", truth, [msg(0, ("car", 0.9, [0, 0, 10, 10])), msg(1, ("person", 0.8, [5, 5, 20, 40]))])
    assert (s.precision, s.recall, s.map50) == (1.0, 1.0, 1.0)


def test_wrong_label_duplicate_and_miss_are_counted() -> None:
    truth = {0: [TruthBox("car", (0, 0, 10, 10)), TruthBox("car", (50, 50, 60, 60))]}
    s = score_camera("c", truth, [msg(0, ("car", 0.9, [0, 0, 10, 10]),      # TP
                                        ("car", 0.8, [0, 0, 10, 10.5]),     # duplicate -> FP
                                        ("person", 0.7, [50, 50, 60, 60]))])  # wrong class -> FP (+ car FN)
    assert (s.true_positives, s.false_positives, s.false_negatives) == (1, 2, 1)
    assert s.precision == pytest.approx(1 / 3) and s.recall == pytest.approx(0.5)


def test_low_iou_is_not_a_match_and_ap_orders_by_score() -> None:
    truth = {0: [TruthBox("car", (0, 0, 10, 10))], 1: [TruthBox("car", (0, 0, 10, 10))]}
    # frame 0: confident but misplaced (IoU 1/3); frame 1: correct but low score
    s = score_camera("c", truth, [msg(0, ("car", 0.9, [5, 0, 15, 10])), msg(1, ("car", 0.3, [0, 0, 10, 10]))])
    assert (s.true_positives, s.false_positives, s.false_negatives) == (1, 1, 1)
    assert s.ap_per_label["car"] == pytest.approx(0.25)  # recall 0.5 reached at precision 0.5


def test_unpublished_frames_are_not_scored() -> None:
    truth = {0: [TruthBox("car", (0, 0, 10, 10))], 1: [TruthBox("car", (0, 0, 10, 10))]}
    s = score_camera("c", truth, [msg(1, ("car", 0.9, [0, 0, 10, 10]))])
    assert s.frames_scored == 1 and s.frames_truth == 2 and s.recall == 1.0


def test_load_truth_reports_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"frame": 0, "objects": []}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"t.jsonl:2: bad ground-truth line"):
        load_truth(p)
