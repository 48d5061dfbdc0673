"""The decoder registry and the end2end decoder's options, on hand-made outputs whose answers are
known: every box encoding gives the same box, class ids from 1, a num_detections column, padding rows."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.postprocess import Decoder, create_decoder, known_formats, register_decoder
from pipeline.postprocess.decoders import End2EndDecoder, Yolov5Decoder

BOX = (10.0, 20.0, 50.0, 80.0)  # x1, y1, x2, y2 in input pixels of a 100 x 100 input


def encode(box: str, normalized: bool) -> list[float]:
    x1, y1, x2, y2 = BOX
    out = {"xyxy": [x1, y1, x2, y2], "yxyx": [y1, x1, y2, x2], "xywh": [x1, y1, x2 - x1, y2 - y1],
           "cxcywh": [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]}[box]
    return [v / 100 for v in out] if normalized else out


def test_registry_knows_the_formats_and_refuses_duplicates() -> None:
    assert known_formats() == ["end2end", "yolov5", "yolov8", "yolox"]
    with pytest.raises(ValueError, match="unknown format 'ssd'; known: end2end, yolov5, yolov8, yolox"):
        create_decoder("ssd", 3, 640)
    with pytest.raises(TypeError, match="already registered"):
        @register_decoder
        class Other(Yolov5Decoder):  # noqa: F841
            format = "yolov5"
    with pytest.raises(TypeError, match="non-empty format"):
        @register_decoder
        class Nameless(Decoder):  # noqa: F841
            pass


@pytest.mark.parametrize("box", ["xyxy", "yxyx", "xywh", "cxcywh"])
@pytest.mark.parametrize("normalized", [False, True])
def test_end2end_box_encodings_give_the_same_box(box: str, normalized: bool) -> None:
    dec = End2EndDecoder(3, 100, columns=("skip", "class", "box", "score"), box=box, normalized=normalized,
                         class_base=1)
    rows = np.array([[0, 3, *encode(box, normalized), 0.9],
                     [0, 1, *encode(box, normalized), 0.2],  # under the threshold
                     [0, 0, *encode(box, normalized), 0.8]], np.float32)  # class 0 - base 1: padding
    xyxy, scores, classes = dec.decode(rows, 0.5)
    np.testing.assert_allclose(xyxy, [BOX], atol=1e-4)
    assert scores.tolist() == [pytest.approx(0.9)] and classes.tolist() == [2]
    assert not dec.needs_nms


def test_end2end_valid_column_and_per_class_scores() -> None:
    dec = End2EndDecoder(2, 100, columns=("box", "classes"), has_valid_column=True)
    rows = np.array([[*BOX, 0.1, 0.7, 1], [*BOX, 0.9, 0.2, 0]], np.float32)  # second row past num_detections
    xyxy, scores, classes = dec.decode(rows, 0.5)
    assert classes.tolist() == [1] and scores.tolist() == [pytest.approx(0.7)]
    assert dec.fits(rows[None], 1) and not dec.fits(rows[None, :, :4], 1)


def test_yolov5_scores_are_objectness_times_class() -> None:
    dec = Yolov5Decoder(2, 100)
    rows = np.array([[30, 50, 40, 60, 0.9, 0.2, 0.8],   # 0.72 class 1
                     [30, 50, 40, 60, 0.4, 1.0, 0.0],   # objectness under 0.5: out before the classes
                     [30, 50, 40, 60, 0.6, 0.7, 0.1]],  # 0.42: under
                    np.float32)
    xyxy, scores, classes = dec.decode(rows, 0.5)
    np.testing.assert_allclose(xyxy, [BOX])
    assert classes.tolist() == [1] and scores.tolist() == [pytest.approx(0.72)]


def test_end2end_logit_scores_go_through_a_sigmoid() -> None:
    """RF-DETR's `labels` output holds class logits: logit 0 is probability 0.5, logit 2 is 0.881."""
    dec = End2EndDecoder(2, 100, columns=("box", "classes"), box="cxcywh", normalized=True, score_logits=True)
    rows = np.array([[*encode("cxcywh", True), -3.0, 2.0], [*encode("cxcywh", True), 0.0, -1.0]], np.float32)
    xyxy, scores, classes = dec.decode(rows, 0.5)
    np.testing.assert_allclose(xyxy, [BOX], atol=1e-4)
    assert classes.tolist() == [1] and scores.tolist() == [pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-6)]
