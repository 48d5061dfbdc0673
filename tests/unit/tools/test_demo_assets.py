"""The committed demo assets agree with each other: clips, ground truth, labels, stats and model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "assets" / "demo"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "assets"))

MAX_CLIP_BYTES = 3_000_000
MAX_MODEL_BYTES = 15_000_000


def _stats() -> dict:
    return json.loads((DEMO / "stats.json").read_text())


def _labels() -> list[str]:
    return (DEMO / "labels.txt").read_text().split()


def _truth(name: str) -> list[dict]:
    return [json.loads(line) for line in (DEMO / name).read_text().splitlines()]


CLIPS = [c for c in _stats()["clips"]]


def test_labels_file_lists_the_stats_classes_once_each():
    labels = _labels()
    assert labels == _stats()["classes"]
    assert len(labels) == len(set(labels)) >= 3


@pytest.mark.parametrize("clip", CLIPS, ids=[c["file"] for c in CLIPS])
def test_clip_decodes_to_one_frame_per_truth_line_at_the_stated_size(clip):
    mp4 = DEMO / clip["file"]
    assert mp4.stat().st_size < MAX_CLIP_BYTES
    truth = _truth(clip["truth"])
    assert [line["frame"] for line in truth] == list(range(clip["frames"]))
    n = 0
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert round(float(stream.average_rate)) == clip["fps"]
        for frame in container.decode(stream):
            assert (frame.width, frame.height) == (clip["width"], clip["height"])
            assert frame.format.name == "yuv420p"
            n += 1
    assert n == len(truth) == clip["frames"]


@pytest.mark.parametrize("clip", CLIPS, ids=[c["file"] for c in CLIPS])
def test_truth_boxes_lie_inside_the_frame_with_known_labels_and_match_stats(clip):
    labels = set(_labels())
    counts = dict.fromkeys(labels, 0)
    for line in _truth(clip["truth"]):
        for obj in line["objects"]:
            assert obj["label"] in labels
            x1, y1, x2, y2 = obj["box"]
            assert all(isinstance(v, int) for v in obj["box"])
            assert 0 <= x1 < x2 <= clip["width"] and 0 <= y1 < y2 <= clip["height"]
            counts[obj["label"]] += 1
    assert counts == {k: v["objects"] for k, v in clip["per_class"].items()}
    assert all(v > 0 for v in counts.values())


def test_renderer_is_deterministic_for_a_seed():
    import demo_scenes

    frames = []
    for _ in range(2):
        plan = demo_scenes.plan_clip(7, 320, 240, 15, 20, np.zeros((576, 768, 3), np.uint8), n_tracks=4, background="procedural")
        frames.append(demo_scenes.render_frame(plan, 10))
    assert np.array_equal(frames[0][0], frames[1][0])
    assert frames[0][1] == frames[1][1]


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    model = DEMO / "detector.onnx"
    assert model.stat().st_size < MAX_MODEL_BYTES
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def test_model_has_dynamic_batch_and_yolov8_layout(session):
    (inp,) = session.get_inputs()
    assert inp.name == "images" and inp.type == "tensor(float)"
    batch, channels, h, w = inp.shape
    assert not isinstance(batch, int) and channels == 3 and h == w and h % 32 == 0
    n_points = sum((h // s) ** 2 for s in (8, 16, 32))
    for b in (1, 3):
        x = np.random.default_rng(b).random((b, 3, h, w), dtype=np.float32)
        (out,) = session.run(None, {"images": x})
        assert out.shape == (b, 4 + len(_labels()), n_points)
        assert out.dtype == np.float32
        assert 0.0 <= out[:, 4:].min() and out[:, 4:].max() <= 1.0


def test_model_finds_the_objects_in_the_first_frames_of_a_demo_clip(session):
    import eval_demo_model

    clip = CLIPS[0]
    truth = _truth(clip["truth"])[:8]
    size = session.get_inputs()[0].shape[-1]
    from pipeline.preprocess.reference import letterbox_reference

    with av.open(str(DEMO / clip["file"])) as container:
        batch = [letterbox_reference(f.to_ndarray(format="rgb24"), size)
                 for _, f in zip(range(8), container.decode(video=0))]
    out = session.run(None, {"images": np.stack([b[0] for b in batch])})[0]
    dets = []
    for o, (_, transform) in zip(out, batch):
        boxes, scores, cls = eval_demo_model.decode_one(o, 0.01, 0.5, 100)
        dets.append((transform.to_source(boxes) if len(boxes) else boxes, scores, cls))
    report = eval_demo_model.evaluate_clip(dets, truth, _labels())
    assert report["gt"] > 0
    assert report["at_0.5"]["recall"] >= 0.8 and report["at_0.5"]["precision"] >= 0.8
