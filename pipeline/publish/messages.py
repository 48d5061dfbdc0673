"""Wire format of published messages: topics, payload dicts, JSON encoding and the packaged schemas.

A message is two ZeroMQ frames: [topic, JSON utf-8]. Topics end in '/' so that ZeroMQ's prefix
filtering is exact per camera (`det/cam1/` is never a prefix of `det/cam10/`). docs/messages.md
is the consumer-facing description; the JSON Schemas in schemas/ are the exact contract.
"""
from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import orjson

from pipeline.config import CAMERA_ID
from pipeline.frame import FrameEvents
from pipeline.frame import CameraState, FrameDetections, StatusEvent

DETECTIONS_SCHEMA = "pipeline.detections/2"  # /2: every detection has track_id (null when not tracked)
STATUS_SCHEMA = "pipeline.status/1"
EVENTS_SCHEMA = "pipeline.events/1"
DETECTION_PREFIX = "det/"
STATUS_PREFIX = "status/"
EVENT_PREFIX = "evt/"
KIND_PREFIXES = {"det": DETECTION_PREFIX, "status": STATUS_PREFIX, "evt": EVENT_PREFIX}
SCHEMA_FILES = {"detections": "detections.schema.json", "status": "status.schema.json",
                "events": "events.schema.json"}


class MessageError(ValueError):
    """A payload that cannot be sent or understood, as one line naming the message and field."""


def _checked_camera(camera: str) -> str:
    if not isinstance(camera, str) or not CAMERA_ID.fullmatch(camera):  # fullmatch: "$" would let "cam1\n" in
        raise MessageError(f"topic: camera id {camera!r} must match [A-Za-z0-9_-]{{1,64}}")
    return camera


def detection_topic(camera: str) -> str:
    return f"{DETECTION_PREFIX}{_checked_camera(camera)}/"


def status_topic(camera: str) -> str:
    return f"{STATUS_PREFIX}{_checked_camera(camera)}/"


def event_topic(camera: str) -> str:
    return f"{EVENT_PREFIX}{_checked_camera(camera)}/"


def topic_prefixes(kinds: tuple[str, ...] | list[str], camera: str | None = None) -> list[str]:
    """The SUB subscriptions for these kinds ("det", "status"), for one camera or all."""
    prefixes = []
    for kind in kinds:
        if kind not in KIND_PREFIXES:
            raise MessageError(f"subscribe: unknown message kind {kind!r} (expected 'det', 'status' or 'evt')")
        prefix = KIND_PREFIXES[kind]
        prefixes.append(prefix if camera is None else f"{prefix}{_checked_camera(camera)}/")
    return prefixes


def _finite(value: Any, where: str) -> float:
    # numpy scalars (float32 scores, boxes) are not JSON-serialisable; float() also rejects junk early
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise MessageError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(out):
        raise MessageError(f"{where}: {out} is not a finite number")
    return out


def _count(value: Any, where: str) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise MessageError(f"{where}: {value!r} is not an integer") from None
    if out != value or out < 0:
        raise MessageError(f"{where}: {value!r} must be an integer >= 0")
    return out


def detections_payload(fd: FrameDetections, seq: int, published_at: float) -> dict[str, Any]:
    """The pipeline.detections/2 dict for one frame. Raises MessageError on values JSON or the
    schema cannot carry (NaN, negative counts, score outside 0..1)."""
    # every frame of every camera comes through here: what the postprocessor makes (python floats and
    # ints) is checked in one expression per detection, and only anything else takes the per-field
    # path that names the field (scripts/publish_cost.py on the 2-core CI box: 62-65 -> 49-51 us a
    # message of 20 detections, 23.5 -> 20.8 us of 5)
    topic = detection_topic(fd.camera_id)
    where = f"{topic} frame {fd.index}"
    pts = None if fd.pts is None else float(fd.pts)
    if pts is not None and not math.isfinite(pts):
        pts = None  # an unknown presentation time is null, never NaN (invalid JSON)
    detections = []
    isfinite = math.isfinite
    for i, det in enumerate(fd.detections):
        score, class_id, box, track_id = det.score, det.class_id, det.box, det.track_id
        if (type(score) is float and 0.0 <= score <= 1.0 and type(class_id) is int and class_id >= 0
                and type(box) is tuple and len(box) == 4 and type(box[0]) is type(box[1]) is type(box[2])
                is type(box[3]) is float and isfinite(box[0] + box[1] + box[2] + box[3])  # NaN/inf in any: not finite
                and (track_id is None or (type(track_id) is int and track_id >= 0))):
            detections.append({"label": det.label if type(det.label) is str else str(det.label),
                               "class_id": class_id, "score": score, "box": list(box), "track_id": track_id})
        else:
            detections.append(_checked_detection(det, f"{where}: detections[{i}]"))
    return {
        "schema": DETECTIONS_SCHEMA,
        "camera": fd.camera_id,
        "seq": _count(seq, f"{where}: seq"),
        "frame": _count(fd.index, f"{where}: frame"),
        "pts": pts,
        "captured_at": _finite(fd.captured_at, f"{where}: captured_at"),
        "published_at": _finite(published_at, f"{where}: published_at"),
        "width": _count(fd.width, f"{where}: width"),
        "height": _count(fd.height, f"{where}: height"),
        "detections": detections,
    }


def _checked_detection(det: Any, at: str) -> dict[str, Any]:
    """One detection's dict, each field converted and checked on its own (numpy scalars, junk)."""
    score = _finite(det.score, f"{at}.score")
    if not 0.0 <= score <= 1.0:
        raise MessageError(f"{at}.score: {score} is outside 0..1")
    if len(det.box) != 4:
        raise MessageError(f"{at}.box: expected 4 numbers x1,y1,x2,y2, got {len(det.box)}")
    return {
        "label": str(det.label),
        "class_id": _count(det.class_id, f"{at}.class_id"),
        "score": score,
        "box": [_finite(v, f"{at}.box") for v in det.box],
        "track_id": None if det.track_id is None else _count(det.track_id, f"{at}.track_id"),
    }


def events_payload(fe: FrameEvents, seq: int, published_at: float) -> dict[str, Any]:
    """The pipeline.events/1 dict: one frame's zone/line events and the camera's running counts."""
    where = f"{event_topic(fe.camera_id)} frame {fe.index}"
    pts = None if fe.pts is None or not math.isfinite(fe.pts) else float(fe.pts)
    events = []
    for i, ev in enumerate(fe.events):
        at = f"{where}: events[{i}]"
        events.append({
            "type": ev.kind,
            "track_id": _count(ev.track_id, f"{at}.track_id"),
            "label": str(ev.label),
            "class_id": _count(ev.class_id, f"{at}.class_id"),
            "zone": ev.zone,
            "line": ev.line,
            "direction": ev.direction,
            "dwell_s": None if ev.dwell_s is None else _finite(ev.dwell_s, f"{at}.dwell_s"),
            "box": [_finite(v, f"{at}.box") for v in ev.box],
            **({"snapshot": ev.snapshot} if ev.snapshot is not None else {}),
        })
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for (rule, label, what), n in fe.counts:
        counts.setdefault(rule, {}).setdefault(label, {})[what] = _count(n, f"{where}: counts")
    return {
        "schema": EVENTS_SCHEMA,
        "camera": fe.camera_id,
        "seq": _count(seq, f"{where}: seq"),
        "frame": _count(fe.index, f"{where}: frame"),
        "pts": pts,
        "captured_at": _finite(fe.captured_at, f"{where}: captured_at"),
        "published_at": _finite(published_at, f"{where}: published_at"),
        "events": events,
        "counts": counts,
    }


def status_payload(ev: StatusEvent) -> dict[str, Any]:
    """The pipeline.status/1 dict for one camera state transition."""
    where = status_topic(ev.camera_id)
    try:
        state = CameraState(ev.state).value  # also accepts the plain string value
    except ValueError:
        raise MessageError(f"{where}: state {ev.state!r} is not one of "
                           f"{', '.join(s.value for s in CameraState)}") from None
    return {
        "schema": STATUS_SCHEMA,
        "camera": ev.camera_id,
        "state": state,
        "at": _finite(ev.at, f"{where}: at"),
        # one line on the wire as everywhere else: a multi-line reason keeps only its first line
        "reason": (str(ev.reason).strip().splitlines() or [""])[0],
    }


def encode_payload(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; labels may be non-ASCII. orjson, not the standard library: every frame of
    every camera is encoded here, and json.dumps was 32 of the 51 us a message of 20 detections took
    (orjson: 3.4 us; scripts/publish_cost.py). orjson writes NaN as null where json refused it: the
    payload builders above reject non-finite numbers themselves, naming the field."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError as exc:  # a type JSON cannot carry (a TypeError, as json.dumps raised)
        raise TypeError(f"payload is not JSON: {exc}") from None


def decode_message(frames: list[bytes], source: str) -> tuple[str, dict[str, Any]]:
    """[topic, JSON] frames -> (topic, dict); MessageError names `source` and the topic."""
    if len(frames) != 2:
        raise MessageError(f"{source}: expected 2 frames [topic, JSON], got {len(frames)}")
    try:
        topic = frames[0].decode("utf-8")
    except UnicodeDecodeError:
        raise MessageError(f"{source}: topic {frames[0][:40]!r} is not UTF-8") from None
    try:
        message = orjson.loads(frames[1])  # its JSONDecodeError is json's (and also catches bad UTF-8)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"{source}: {topic}: payload is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise MessageError(f"{source}: {topic}: payload is {type(message).__name__}, expected a JSON object")
    return topic, message


def load_schema(kind: str) -> dict[str, Any]:
    """The packaged JSON Schema (draft 2020-12) for "detections", "status" or "events"; a fresh dict each call."""
    if kind not in SCHEMA_FILES:
        raise MessageError(f"schema: unknown kind {kind!r} (expected 'detections', 'status' or 'events')")
    text = resources.files("pipeline.publish").joinpath("schemas").joinpath(SCHEMA_FILES[kind]).read_text("utf-8")
    return json.loads(text)
