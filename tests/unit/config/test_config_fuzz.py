"""Fuzzing the config loader: whatever the text, the result is a PipelineConfig or a ConfigError
whose message is one line starting with `source:LINE:`. Never a traceback, never a hang."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.config import ConfigError, PipelineConfig, load_config, parse_config

SOURCE = "fuzz.yaml"
ONE_LINE = re.compile(rf"^{re.escape(SOURCE)}:\d+: \S")
BASE = Path("/nonexistent-config-dir")
ENV = {"CAM_PASSWORD": "hunter2", "EMPTY": ""}

VALID: dict[str, Any] = {
    "cameras": [
        {"id": "gate", "url": "rtsp://viewer:${CAM_PASSWORD}@10.0.0.7/stream1", "timeout_s": 5},
        {"id": "lobby", "url": "clips/lobby.mp4", "loop": True, "realtime": False},
        {"id": "synthetic-1", "url": "synthetic:640x480@25"},
    ],
    "model": {"path": "models/detector.onnx", "labels": ["person", "car"], "input_size": 320,
              "score_threshold": 0.4, "iou_threshold": 0.5, "max_detections": 100},
    "decode": {"device": "cpu"},
    "preprocess": {"device": "cpu", "num_threads": 2},
    "scheduler": {"max_batch": 8, "max_wait_ms": 20, "queue_per_camera": 4},
    "publish": {"bind": "tcp://127.0.0.1:5555", "high_water_mark": 1000, "linger_ms": 500},
    "metrics": {"bind": "127.0.0.1:9108"},
}
VALID_TEXT = yaml.safe_dump(VALID, sort_keys=False)

# YAML that exercises the parser's corners: tags, anchors and aliases, complex keys, several
# documents, odd scalars, deep nesting, control characters.
NASTY = [
    "!!python/object:os.system {}", "!!binary 'not base64!'", "!!timestamp 2024-13-45", "!!timestamp 2024-13-45x", "!custom x",
    "!!int abc", "!!float x", "!!map [1, 2]", "!!seq {a: 1}", "!!set {a, b}", "!!omap [a, b]",
    "&a [*a]", "&a {k: *a}", "*undefined", "? [a, b]\n: c", "? {a: 1}\n: b", "--- 1\n--- 2",
    "\"a\\nb\": 1", "'tab\there': 1", ".inf", "-.nan", "0x1F", "0o17", "1_000", "~", "null",
    "\x00", "\x85", "\u2028", "\ufeffcameras: []", "%YAML 1.1\n---\na: 1", "%TAG ! tag:x,2000:\n--- !y 1",
    "[" * 200 + "]" * 200, "{a: " * 150 + "1" + "}" * 150, "[" * 700 + "]" * 700, "- " * 700 + "x", "a:\n" + "  " * 400 + "b: 1",
    "a: &x [1, 2]\nb: *x", "cameras: &c\n  - {id: a, url: x.mp4}\nmore: *c",
    "lol: &a [x, x, x, x, x, x, x, x, x]\nlol2: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "lol3: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nlol4: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "lol5: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nlol6: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "lol7: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nlol8: [*g, *g, *g, *g, *g, *g, *g, *g, *g]",
    "${NOT_SET}", "${secret:x}", "${secret:../../etc/passwd}", "${EMPTY}", "$${CAM_PASSWORD}",
]


def check(text: str) -> None:
    try:
        cfg = parse_config(text, source=SOURCE, base=BASE, env=ENV, check_files=False)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, message
        assert ONE_LINE.match(message), message
    else:
        assert isinstance(cfg, PipelineConfig)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                    st.sampled_from(["", "0", "yes", "no", "~", "rtsp://h/s", "synthetic:8x8@1", "${CAM_PASSWORD}",
                                     "${NOT_SET}", "tcp://*:1", "gpu", "fp16", "auto", "file", "network"]))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(list(VALID))),
                                                 inner, max_size=4)), max_leaves=20)


def paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths(v, prefix + (i,))
    return out


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    """The valid config with a few values replaced, keys deleted or added, at random places."""
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(data)))
        if not where:
            continue
        parent = data
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[where[-1]] = draw(documents)
        elif action == "delete":
            del parent[where[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(documents)
        else:
            parent.append(draw(documents))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=draw(st.booleans()))


@st.composite
def edited_texts(draw: st.DrawFn) -> str:
    """The valid config's text with a few characters or snippets inserted, deleted or replaced."""
    text = VALID_TEXT
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 8))
        insert = draw(st.one_of(st.text(max_size=6), st.sampled_from(NASTY + [":", "-", " ", "\n", "\t", "'", '"',
                                                                              "[", "{", "#", "&", "*", "!", "|"])))
        text = text[:at] + insert + text[at + cut:]
    return text


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=200))
@example("")
@example("cameras: [")
def test_arbitrary_text(text: str) -> None:
    check(text)


@FUZZ
@given(documents)
def test_arbitrary_yaml_documents(doc: Any) -> None:
    check(yaml.safe_dump(doc))


@FUZZ
@given(mutated_configs())
def test_mutated_valid_config(text: str) -> None:
    check(text)


@FUZZ
@given(edited_texts())
def test_edited_valid_config_text(text: str) -> None:
    check(text)


@pytest.mark.parametrize("snippet", NASTY, ids=range(len(NASTY)))
def test_yaml_corners_alone_and_inside_a_config(snippet: str) -> None:
    for prefix in ("", "model: ", "cameras:\n  - id: a\n    url: ", "x:\n  y: "):
        check(prefix + snippet)
    check(VALID_TEXT + "extra: " + snippet)
    check(VALID_TEXT + snippet)


def test_the_valid_config_is_valid() -> None:  # the mutations start from a config that loads
    cfg = parse_config(VALID_TEXT, source=SOURCE, base=BASE, env=ENV, check_files=False)
    assert [c.id for c in cfg.cameras] == ["gate", "lobby", "synthetic-1"]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_files_of_arbitrary_bytes(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / SOURCE
    path.write_bytes(data)
    try:
        load_config(path, env=ENV, check_files=False)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and re.match(rf"^{re.escape(str(path))}:\d+: \S", message), message
