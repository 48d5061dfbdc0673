"""The candidate-selection graph (pipeline/infer/candidates.py), run by the real ONNX Runtime, and
the postprocess on its output against the postprocess on the full output."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from pipeline.frame import Frame, InferenceResult, LetterboxTransform, OutputLayout
from pipeline.infer.candidates import CandidateGraphError, append_candidate_selection
from pipeline.postprocess import YoloPostprocessor


def passthrough_model(rows: int | str, anchors: int | str, opset: int = 17,
                      dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A "detector" whose output is its input: the test chooses the raw output exactly."""
    shape = ["batch", rows, anchors]
    graph = helper.make_graph([helper.make_node("Identity", ["raw_in"], ["output0"])], "passthrough",
                              [helper.make_tensor_value_info("raw_in", dtype, shape)],
                              [helper.make_tensor_value_info("output0", dtype, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def run_candidates(model: onnx.ModelProto, raw: np.ndarray, k: int, **graph: object) -> np.ndarray:
    merged = append_candidate_selection(model, k, **graph)
    onnx.checker.check_model(merged)
    session = ort.InferenceSession(merged.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"raw_in": raw})[0]


def numpy_candidates(raw: np.ndarray, k: int) -> np.ndarray:
    best, cls = raw[:, 4:].max(axis=1), raw[:, 4:].argmax(axis=1)
    out = []
    for b in range(len(raw)):
        order = np.argsort(-best[b], kind="stable")[:k]
        out.append(np.concatenate([raw[b, :4][:, order], best[b][None, order], cls[b][None, order]]))
    return np.stack(out).astype(np.float32)


@pytest.mark.parametrize("anchors", [300, "n"])  # a fixed anchor count, and one known only at run time
def test_graph_selects_the_k_best_anchors_sorted(anchors: int | str) -> None:
    rng = np.random.default_rng(1)
    raw = rng.random((3, 4 + 5, 300), dtype=np.float32)
    got = run_candidates(passthrough_model(9, anchors), raw, 40)
    assert got.shape == (3, 6, 40) and got.dtype == np.float32
    np.testing.assert_array_equal(got, numpy_candidates(raw, 40))


def test_k_larger_than_the_anchor_count_returns_every_anchor() -> None:
    raw = np.random.default_rng(2).random((2, 7, 50), dtype=np.float32)
    for anchors in (50, "n"):
        got = run_candidates(passthrough_model(7, anchors), raw, 1024)
        np.testing.assert_array_equal(got, numpy_candidates(raw, 50))


def test_ties_between_classes_pick_the_lowest_class_id_as_argmax_does() -> None:
    raw = np.zeros((1, 4 + 3, 8), np.float32)
    raw[0, 4:, :] = 0.5  # every class equal everywhere
    raw[0, 6, 3] = 0.9
    got = run_candidates(passthrough_model(7, 8), raw, 8)
    assert got[0, 5, 0] == 2 and got[0, 4, 0] == np.float32(0.9)
    assert set(got[0, 5, 1:].tolist()) == {0.0}


GRAPH_VARIANTS = [{}, {"class_max": "argmax"}, {"cast_last": True}, {"class_max": "argmax", "cast_last": True}]


@pytest.mark.parametrize("graph", GRAPH_VARIANTS)
def test_fp16_outputs_are_cast_to_float32(graph: dict) -> None:
    raw = np.random.default_rng(3).random((2, 6, 20)).astype(np.float16)
    got = run_candidates(passthrough_model(6, 20, dtype=TensorProto.FLOAT16), raw, 5, **graph)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, numpy_candidates(raw.astype(np.float32), 5))


@pytest.mark.parametrize("graph", GRAPH_VARIANTS)
@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_every_graph_variant_selects_the_same_candidates(graph: dict, dtype: int) -> None:
    rng = np.random.default_rng(4)
    raw = rng.random((3, 4 + 7, 400), dtype=np.float32)
    raw[:, 4 + 2, 5] = raw[:, 4 + 5, 5] = 2.0  # a tie between two classes: the lower id wins
    if dtype == TensorProto.FLOAT16:
        raw = raw.astype(np.float16)
    got = run_candidates(passthrough_model(11, 400, dtype=dtype), raw, 50, **graph)
    np.testing.assert_array_equal(got, numpy_candidates(raw.astype(np.float32), 50))
    assert got[0, 5, 0] == 2


def test_an_unknown_class_max_is_refused() -> None:
    with pytest.raises(CandidateGraphError, match="class_max 'sort'"):
        append_candidate_selection(passthrough_model(9, 100), 10, class_max="sort")


@pytest.mark.parametrize("model, words", [
    (passthrough_model(9, 100, opset=10), "opset 10 is older than 11"),
    (passthrough_model("rows", 100), "must be [B, 4+C, N] with a fixed 4+C"),
    (passthrough_model(9, "n", opset=11), "dynamic anchor count, which needs opset 12"),
])
def test_models_the_graph_does_not_fit_are_refused_in_one_line(model: onnx.ModelProto, words: str) -> None:
    with pytest.raises(CandidateGraphError) as err:
        append_candidate_selection(model, 10, "cams/m.onnx")
    assert "\n" not in str(err.value) and "cams/m.onnx" in str(err.value) and words in str(err.value)


# ------------------------------------------------------------------ postprocess on candidates

LABELS = ["person", "car", "dog"]


def crowded_output(rng: np.random.Generator, frames: int, anchors: int, passing: int) -> np.ndarray:
    """[B, 7, N] with `passing` anchors per frame over 0.5: overlapping boxes of mixed classes."""
    raw = np.zeros((frames, 7, anchors), np.float32)
    raw[:, 0] = rng.uniform(0, 640, (frames, anchors))
    raw[:, 1] = rng.uniform(80, 560, (frames, anchors))
    raw[:, 2:4] = rng.uniform(10, 120, (frames, 2, anchors))
    raw[:, 4:] = rng.uniform(0, 0.45, (frames, 3, anchors))
    for b in range(frames):
        hot = rng.choice(anchors, passing, replace=False)
        raw[b, 4 + rng.integers(0, 3, passing), hot] = rng.uniform(0.5, 1.0, passing)
    return raw


def detections(raw_or_candidates: np.ndarray, layout: OutputLayout, truncated: list[Frame] | None = None):
    n = len(raw_or_candidates)
    frames = tuple(Frame(f"cam{i}", i, None, 0.0, 1280, 720, None) for i in range(n))
    transforms = (LetterboxTransform.fit(1280, 720, 640),) * n
    post = YoloPostprocessor(LABELS, 0.5, 0.45, 100, on_truncated=truncated.append if truncated is not None else None)
    return post(InferenceResult(frames, transforms, raw_or_candidates, 0.0, layout))


def test_postprocess_of_candidates_equals_postprocess_of_every_anchor() -> None:
    raw = crowded_output(np.random.default_rng(4), frames=4, anchors=2000, passing=400)
    truncated: list[Frame] = []
    full = detections(raw, OutputLayout.ANCHORS)
    top = detections(numpy_candidates(raw, 512), OutputLayout.CANDIDATES, truncated)
    assert [fd.detections for fd in top] == [fd.detections for fd in full]
    assert sum(len(fd.detections) for fd in full) > 100  # a real NMS workload, not an empty comparison
    assert truncated == []


def test_a_full_candidate_list_is_reported_per_frame() -> None:
    raw = crowded_output(np.random.default_rng(5), frames=3, anchors=500, passing=50)
    raw[1, 4, :] = 0.9  # frame 1: every anchor passes, more than the 64 candidates kept
    truncated: list[Frame] = []
    top = detections(numpy_candidates(raw, 64), OutputLayout.CANDIDATES, truncated)
    assert [f.index for f in truncated] == [1]
    assert len(top) == 3 and top[1].detections  # the 64 best still give detections
