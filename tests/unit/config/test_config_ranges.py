"""Every integer in the config has a range that `check` enforces, and bind addresses are checked
when the config is loaded (issue 23 item 5: a huge high_water_mark hung `run`, a port of 99999 gave a
raw traceback)."""
from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import annotated_types
import pytest
from pydantic import BaseModel

from pipeline.config import ConfigError, PipelineConfig, parse_config

REPO = Path(__file__).resolve().parents[3]


def models(root: type[BaseModel]) -> set[type[BaseModel]]:
    """The model and every model reachable through its fields (lists and optionals included)."""
    found, todo = set(), [root]
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found.add(model)
        for field in model.model_fields.values():
            for arg in [field.annotation, *typing.get_args(field.annotation)]:
                for inner in [arg, *typing.get_args(arg)]:
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        todo.append(inner)
    return found


def is_int_field(annotation: object) -> bool:
    return annotation is int or (int in typing.get_args(annotation) and bool not in typing.get_args(annotation))


def test_every_integer_in_every_config_model_has_both_bounds() -> None:
    unbounded = []
    for model in models(PipelineConfig):
        for name, field in model.model_fields.items():
            if not is_int_field(field.annotation):
                continue
            kinds = {type(m) for m in field.metadata}
            has_low = kinds & {annotated_types.Ge, annotated_types.Gt}
            has_high = kinds & {annotated_types.Le, annotated_types.Lt}
            if not (has_low and has_high):
                unbounded.append(f"{model.__name__}.{name}")
    assert len(models(PipelineConfig)) >= 10  # the walk really reached the sections
    assert not unbounded, f"integers without a range: {unbounded}"


BASE = "cameras: [{id: a, url: 'synthetic:64x48@5'}]\nmodel: {path: m.onnx, labels: [x]}\n"


@pytest.mark.parametrize("section, message", [
    ("publish: {high_water_mark: 99999999999}", "publish.high_water_mark: Input should be less than or equal to"),
    ("publish: {linger_ms: 86400000}", "publish.linger_ms: Input should be less than or equal to"),
    ("metrics: {bind: '0.0.0.0:99999'}", "metrics.bind: bind '0.0.0.0:99999': port '99999' must be 0-65535"),
    ("metrics: {bind: '127.0.0.1'}", "metrics.bind: bind '127.0.0.1': expected HOST:PORT"),
    ("metrics: {bind: 'a b:80'}", "metrics.bind: bind 'a b:80': host 'a b' is not a host name or address"),
    ("publish: {bind: 'tcp://127.0.0.1:70000'}", "publish.bind: bind 'tcp://127.0.0.1:70000': port '70000' must be"),
    ("publish: {bind: 'tcp://127.0.0.1:http'}", "port 'http' must be 0-65535 or *"),
    ("decode: {gpu_id: 4096}", "decode.gpu_id: Input should be less than or equal to 63"),
])
def test_out_of_range_is_a_one_line_error_naming_the_line(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + section + "\n", source="cfg.yaml", check_files=False)
    assert str(err.value).startswith("cfg.yaml:3: ") and message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bind", ["tcp://*:5555", "tcp://127.0.0.1:*", "tcp://[::1]:5555", "ipc:///run/p.sock"])
def test_good_publish_binds_pass(bind: str) -> None:
    cfg = parse_config(BASE + f"publish: {{bind: '{bind}'}}\n", check_files=False)
    assert cfg.publish.bind == bind


def test_check_refuses_a_bad_port_with_exit_2_and_one_line(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"x")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(BASE + "metrics: {bind: '0.0.0.0:99999'}\n")
    out = subprocess.run([sys.executable, "-m", "pipeline", "check", str(cfg)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"{cfg}:3: metrics.bind: bind '0.0.0.0:99999': port '99999' must be 0-65535"]


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "loop1").symlink_to(d / "loop2") or (d / "loop2").symlink_to(d / "loop1") or "loop1",
     "cameras[0].url: {d}/loop1: symbolic link loop"),
    (lambda d: (d / "clips").mkdir() or "clips", "cameras[0].url: {d}/clips is a directory, not a file"),
    (lambda d: "absent.mp4", "cameras[0].url: no such file {d}/absent.mp4"),
])
def test_file_camera_problems_are_named_by_check(tmp_path: Path, make, message: str) -> None:
    """Issue 23 item 11: a symlink loop read "no such file"; a directory passed check."""
    (tmp_path / "m.onnx").write_bytes(b"x")
    url = make(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"cameras: [{{id: a, url: '{url}'}}]\nmodel: {{path: m.onnx, labels: [x]}}\n")
    with pytest.raises(ConfigError) as err:
        from pipeline.config import load_config
        load_config(cfg)
    assert str(err.value) == f"{cfg}:1: " + message.format(d=tmp_path)
