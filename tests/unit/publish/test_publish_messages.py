"""Payload building, JSON encoding and the packaged JSON Schemas (no sockets)."""
from __future__ import annotations

import copy
import json
import math

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.frame import CameraState, Detection, FrameDetections, StatusEvent
from pipeline.publish import (DETECTIONS_SCHEMA, STATUS_SCHEMA, MessageError, detection_topic, detections_payload,
                              format_message_line, load_schema, status_payload, status_topic)
from pipeline.publish.messages import decode_message, encode_payload, topic_prefixes

DET_VALIDATOR = jsonschema.Draft202012Validator(load_schema("detections"))
STATUS_VALIDATOR = jsonschema.Draft202012Validator(load_schema("status"))


def frame_detections(camera: str = "cam1", n: int = 2, pts: float | None = 1.5) -> FrameDetections:
    dets = tuple(Detection(label=f"class{i}", class_id=i, score=np.float32(0.5 + i / (2 * n + 2)),
                           box=tuple(np.float32(v) for v in (10 * i, 20 * i, 10 * i + 5.5, 20 * i + 7.25)))
                 for i in range(n))
    return FrameDetections(camera_id=camera, index=42, pts=pts, captured_at=1_700_000_000.25,
                           width=1920, height=1080, detections=dets)


def valid_detections() -> dict:
    return detections_payload(frame_detections(), seq=7, published_at=1_700_000_000.5)


def valid_status() -> dict:
    return status_payload(StatusEvent("cam1", CameraState.RECONNECTING, 1_700_000_000.0, "read timeout"))


# ------------------------------------------------------------------ schemas themselves

@pytest.mark.parametrize("kind", ["detections", "status"])
def test_packaged_schema_is_valid_draft_2020_12_and_strict(kind: str) -> None:
    schema = load_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    if kind == "detections":
        item = schema["$defs"]["detection"]
        assert item["additionalProperties"] is False and set(item["required"]) == set(item["properties"])


def test_load_schema_returns_a_fresh_dict_and_rejects_unknown_kinds() -> None:
    load_schema("status")["required"].clear()
    assert "camera" in load_schema("status")["required"]
    with pytest.raises(MessageError, match="unknown kind 'nope'"):
        load_schema("nope")


# ------------------------------------------------------------------ payloads validate

def test_detections_payload_fields_validate_and_survive_json() -> None:
    payload = valid_detections()
    DET_VALIDATOR.validate(payload)
    assert payload["schema"] == DETECTIONS_SCHEMA == "pipeline.detections/2"
    assert (payload["camera"], payload["seq"], payload["frame"], payload["pts"]) == ("cam1", 7, 42, 1.5)
    assert (payload["width"], payload["height"]) == (1920, 1080)
    assert payload["captured_at"] == 1_700_000_000.25 and payload["published_at"] == 1_700_000_000.5
    assert payload["detections"][1] == {"label": "class1", "class_id": 1, "score": pytest.approx(2 / 3),
                                        "box": [10.0, 20.0, 15.5, 27.25], "track_id": None}
    decoded = json.loads(encode_payload(payload))  # numpy scalars became plain JSON numbers
    DET_VALIDATOR.validate(decoded)
    assert decoded == payload


def test_empty_detections_and_unknown_pts_validate() -> None:
    for pts in (None, math.nan, math.inf):
        payload = detections_payload(frame_detections(n=0, pts=pts), seq=0, published_at=1.0)
        DET_VALIDATOR.validate(payload)
        assert payload["pts"] is None and payload["detections"] == []
        assert b"NaN" not in encode_payload(payload)


@pytest.mark.parametrize("state", list(CameraState))
def test_status_payload_for_every_state_validates(state: CameraState) -> None:
    payload = status_payload(StatusEvent("cam-2_x", state, 1_700_000_000.0))
    STATUS_VALIDATOR.validate(payload)
    assert payload == {"schema": STATUS_SCHEMA, "camera": "cam-2_x", "state": state.value,
                       "at": 1_700_000_000.0, "reason": ""}


def test_status_reason_is_one_line() -> None:
    payload = status_payload(StatusEvent("cam1", CameraState.DOWN, 1.0, "  connect refused\ntraceback...\n"))
    assert payload["reason"] == "connect refused"


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 79), st.floats(0, 1),
                          st.lists(st.floats(-1e6, 1e6), min_size=4, max_size=4)), max_size=8),
       st.integers(0, 2**40), st.one_of(st.none(), st.floats(allow_nan=True)),
       st.text(alphabet="abcXYZ019_-", min_size=1, max_size=12))
def test_any_well_formed_frame_gives_a_schema_valid_message(dets, seq, pts, camera) -> None:
    fd = FrameDetections(camera, 3, pts, 1.0, 640, 480,
                         tuple(Detection(f"l{c}", c, s, tuple(b)) for c, s, b in dets))
    DET_VALIDATOR.validate(json.loads(encode_payload(detections_payload(fd, seq, 2.0))))


# ------------------------------------------------------------------ the schemas reject bad payloads

def _without(key: str):
    def mutate(p: dict) -> None:
        del p[key]
    return mutate


def _set(path: tuple, value):
    def mutate(p: dict) -> None:
        target = p
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return mutate


DETECTIONS_BREAKAGES = {
    **{f"missing {k}": _without(k) for k in ("schema", "camera", "seq", "frame", "pts", "captured_at",
                                             "published_at", "width", "height", "detections")},
    "extra top-level field": _set(("fps",), 25),
    "extra detection field": _set(("detections", 0, "velocity"), 3),
    "missing detection score": lambda p: p["detections"][0].pop("score"),
    "negative seq": _set(("seq",), -1),
    "fractional seq": _set(("seq",), 1.5),
    "seq as string": _set(("seq",), "1"),
    "negative frame": _set(("frame",), -3),
    "negative width": _set(("width",), -1),
    "height as float": _set(("height",), 10.5),
    "pts as string": _set(("pts",), "1.0"),
    "captured_at null": _set(("captured_at",), None),
    "score above 1": _set(("detections", 0, "score"), 1.5),
    "score below 0": _set(("detections", 0, "score"), -0.01),
    "negative class_id": _set(("detections", 0, "class_id"), -1),
    "label not a string": _set(("detections", 0, "label"), 5),
    "box of 3": _set(("detections", 0, "box"), [1, 2, 3]),
    "box of 5": _set(("detections", 0, "box"), [1, 2, 3, 4, 5]),
    "box with a string": _set(("detections", 0, "box"), [1, 2, "3", 4]),
    "box as object": _set(("detections", 0, "box"), {"x1": 1}),
    "future major version": _set(("schema",), "pipeline.detections/3"),
    "camera with a slash": _set(("camera",), "cam/1"),
    "empty camera": _set(("camera",), ""),
    "detections not a list": _set(("detections",), {}),
}


@pytest.mark.parametrize("name", list(DETECTIONS_BREAKAGES))
def test_detections_schema_rejects(name: str) -> None:
    payload = copy.deepcopy(valid_detections())
    DETECTIONS_BREAKAGES[name](payload)
    with pytest.raises(jsonschema.ValidationError):
        DET_VALIDATOR.validate(payload)


STATUS_BREAKAGES = {
    **{f"missing {k}": _without(k) for k in ("schema", "camera", "state", "at", "reason")},
    "extra field": _set(("seq",), 0),
    "unknown state": _set(("state",), "sleeping"),
    "state in capitals": _set(("state",), "UP"),
    "negative at": _set(("at",), -5.0),
    "reason null": _set(("reason",), None),
    "detections schema string": _set(("schema",), DETECTIONS_SCHEMA),
}


@pytest.mark.parametrize("name", list(STATUS_BREAKAGES))
def test_status_schema_rejects(name: str) -> None:
    payload = copy.deepcopy(valid_status())
    STATUS_VALIDATOR.validate(payload)
    STATUS_BREAKAGES[name](payload)
    with pytest.raises(jsonschema.ValidationError):
        STATUS_VALIDATOR.validate(payload)


# ------------------------------------------------------------------ builder refuses what the schema cannot carry

@pytest.mark.parametrize("fd, seq, expected", [
    (FrameDetections("cam1", 5, None, 1.0, 64, 48, (Detection("car", 2, math.nan, (0, 0, 1, 1)),)), 0,
     r"^det/cam1/ frame 5: detections\[0\]\.score: nan is not a finite number$"),
    (FrameDetections("cam1", 5, None, 1.0, 64, 48, (Detection("car", 2, 1.2, (0, 0, 1, 1)),)), 0,
     r"detections\[0\]\.score: 1\.2 is outside 0\.\.1$"),
    (FrameDetections("cam1", 5, None, 1.0, 64, 48, (Detection("car", 2, 0.5, (0, math.inf, 1, 1)),)), 0,
     r"detections\[0\]\.box: inf is not a finite number$"),
    (FrameDetections("cam1", 5, None, 1.0, 64, 48, (Detection("car", 2, 0.5, (0, 0, 1)),)), 0,
     r"detections\[0\]\.box: expected 4 numbers"),
    (FrameDetections("cam1", -1, None, 1.0, 64, 48, ()), 0, r"frame -1: frame: -1 must be an integer >= 0$"),
    (FrameDetections("cam1", 5, None, 1.0, 64, 48, ()), -2, r"seq: -2 must be an integer >= 0$"),
    (FrameDetections("cam 1", 5, None, 1.0, 64, 48, ()), 0, r"camera id 'cam 1' must match"),
])
def test_detections_payload_refuses_unsendable_values_in_one_line(fd, seq, expected) -> None:
    with pytest.raises(MessageError, match=expected) as info:
        detections_payload(fd, seq, 1.0)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("det, expected", [  # all python floats: what the postprocessor makes
    (Detection("car", 2, 0.5, (0.0, math.nan, 1.0, 1.0)), r"detections\[0\]\.box: nan is not a finite number$"),
    (Detection("car", 2, 0.5, (0.0, 1e308, 1e308, -math.inf)), r"detections\[0\]\.box: -inf is not a finite number$"),
    (Detection("car", 2, 1.5, (0.0, 0.0, 1.0, 1.0)), r"detections\[0\]\.score: 1\.5 is outside 0\.\.1$"),
    (Detection("car", -1, 0.5, (0.0, 0.0, 1.0, 1.0)), r"detections\[0\]\.class_id: -1 must be an integer >= 0$"),
    (Detection("car", 2, 0.5, (0.0, 0.0, 1.0, 1.0), -3), r"detections\[0\]\.track_id: -3 must be an integer >= 0$"),
])
def test_the_fast_check_of_plain_floats_refuses_what_the_field_by_field_check_refuses(det, expected) -> None:
    with pytest.raises(MessageError, match=expected):
        detections_payload(FrameDetections("cam1", 5, None, 1.0, 64, 48, (det,)), 0, 1.0)


def test_plain_and_numpy_detections_give_the_same_payload() -> None:
    import numpy as np

    plain = Detection("car", 2, 0.75, (1.5, 2.0, 1e308, 1e308), 7)  # the box's sum overflows: checked field by field
    numpy = Detection(np.str_("car"), np.int64(2), np.float32(0.75), tuple(np.float64(v) for v in plain.box),
                      np.int32(7))
    payloads = [detections_payload(FrameDetections("cam1", 5, 0.2, 1.0, 64, 48, (d, d)), 3, 2.0)
                for d in (plain, numpy)]
    assert payloads[0] == payloads[1]
    assert payloads[0]["detections"][0] == {"label": "car", "class_id": 2, "score": 0.75,
                                            "box": [1.5, 2.0, 1e308, 1e308], "track_id": 7}
    assert json.loads(encode_payload(payloads[1])) == payloads[0]


def test_status_payload_refuses_unknown_state() -> None:
    with pytest.raises(MessageError, match=r"^status/cam1/: state 'sleeping' is not one of starting, up"):
        status_payload(StatusEvent("cam1", "sleeping", 1.0))  # type: ignore[arg-type]


# ------------------------------------------------------------------ topics and lines

def test_topics_end_in_a_slash_so_prefixes_are_exact_per_camera() -> None:
    assert detection_topic("cam1") == "det/cam1/" and status_topic("cam1") == "status/cam1/"
    assert not detection_topic("cam10").startswith(detection_topic("cam1"))
    assert not detection_topic("cam1-b").startswith(detection_topic("cam1"))
    assert topic_prefixes(("det", "status")) == ["det/", "status/"]
    assert topic_prefixes(("status",), "cam1") == ["status/cam1/"]
    with pytest.raises(MessageError, match="unknown message kind 'video'"):
        topic_prefixes(("video",))
    for bad in ("", "cam/1", "cam*", "kamera-ü", "cam1\n"):
        with pytest.raises(MessageError, match="must match"):
            detection_topic(bad)


def test_format_message_line_is_one_json_object_per_line() -> None:
    msg = valid_detections()
    msg["detections"][0]["label"] = "two\nlines ü"
    line = format_message_line("det/cam1/", msg)
    assert "\n" not in line
    assert json.loads(line) == {"topic": "det/cam1/", "message": msg}


def test_decode_message_rejects_malformed_frames_in_one_line() -> None:
    assert decode_message([b"det/cam1/", b'{"a": 1}'], "tcp://x:1") == ("det/cam1/", {"a": 1})
    for frames, expected in [([b"det/cam1/"], "expected 2 frames"),
                             ([b"det/cam1/", b"{nope"], "det/cam1/: payload is not JSON"),
                             ([b"det/cam1/", b"[1, 2]"], "payload is list, expected a JSON object"),
                             ([b"\xff", b"{}"], "is not UTF-8")]:
        with pytest.raises(MessageError, match=expected) as info:
            decode_message(frames, "tcp://x:1")
        assert str(info.value).startswith("tcp://x:1: ") and "\n" not in str(info.value)
