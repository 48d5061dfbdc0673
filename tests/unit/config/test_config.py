"""Config loading: typed models, ${VAR} expansion, one-line errors naming file:line and path."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config, parse_config

GOOD = """\
cameras:
  - id: lobby
    url: rtsp://viewer:${PW}@10.0.0.21:554/stream1
  - id: parking
    url: clips/parking.mp4
    loop: true
    realtime: false
model:
  path: models/detector.onnx
  labels: [person, car]
  input_size: 320
scheduler: {max_batch: 8, max_wait_ms: 15, queue_per_camera: 3}
publish: {bind: "tcp://127.0.0.1:5599"}
"""


def write_tree(tmp_path: Path, text: str) -> Path:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "parking.mp4").write_bytes(b"x")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "detector.onnx").write_bytes(b"x")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text)
    return cfg


def test_good_config_resolves_types_paths_and_env(tmp_path: Path) -> None:
    cfg = load_config(write_tree(tmp_path, GOOD), env={"PW": "s3cret"})
    lobby, parking = cfg.cameras
    assert lobby.type == "network" and lobby.url == "rtsp://viewer:s3cret@10.0.0.21:554/stream1"
    assert lobby.is_live
    assert parking.type == "file" and parking.loop and not parking.is_live
    assert Path(parking.url) == tmp_path / "clips" / "parking.mp4"
    assert cfg.model.path == tmp_path / "models" / "detector.onnx"
    assert cfg.scheduler.max_batch == 8 and cfg.scheduler.queue_per_camera == 3
    assert cfg.decode.device == "cpu" and cfg.preprocess.device == "cpu"


def test_labels_from_file(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("person\ncar\n\nbicycle\n")
    text = GOOD.replace("labels: [person, car]", "labels: labels.txt")
    cfg = load_config(write_tree(tmp_path, text), env={"PW": "x"})
    assert cfg.model.labels == ["person", "car", "bicycle"]


@pytest.mark.parametrize("old,new,line,expect", [
    ("    loop: true\n", "    loop: true\n    bogus: 1\n", 7, "cameras[1].bogus: unknown key 'bogus'"),
    ("  - id: parking", "  - id: lobby", 4, "camera id 'lobby' is used twice"),
    ("  - id: parking", "  - id: park ing", 4, "cameras[1].id: camera id 'park ing' must match"),
    ("  input_size: 320", "  input_size: 300", 11, "model.input_size: input_size 300 must be a multiple of 32"),
    ("  input_size: 320\n", "  input_size: 320\n  onnxruntime: {cuda_grpah: false}\n", 12,
     "model.onnxruntime.cuda_grpah: unknown key 'cuda_grpah'"),
    ("max_batch: 8", "max_batch: 0", 12, "scheduler.max_batch: Input should be greater than or equal to 1"),
    ("scheduler:", "decode: {workers: 65}\nscheduler:", 12, "decode.workers: Input should be less than or equal to 64"),
    ("scheduler:", "decode: {workers: -1}\nscheduler:", 12, "decode.workers: Input should be greater than or equal to 0"),
    ("  input_size: 320\n", "  input_size: 320\n  instances: 0\n", 12,
     "model.instances: Input should be greater than or equal to 1"),
    ("  input_size: 320\n", "  input_size: 320\n  instances: 9\n", 12,
     "model.instances: Input should be less than or equal to 8"),
    ("scheduler:", "decode: {device: gpu, nvdec_output: nv12}\npreprocess: {device: gpu, kernel: dali}\nscheduler:", 13,
     "preprocess: decode.nvdec_output nv12 needs preprocess device gpu with kernel fused"),
    ("scheduler:", "preprocess: {kernel: fast}\nscheduler:", 12, "preprocess.kernel: Input should be 'fused' or 'dali'"),
    ("scheduler:", "decode: {nvdec_output: yuv}\nscheduler:", 12, "decode.nvdec_output: Input should be 'nv12' or 'rgb'"),
    ("max_batch: 8", "max_batch: lots", 12, "scheduler.max_batch: Input should be a valid integer"),
    ('"tcp://127.0.0.1:5599"', '"localhost:5599"', 13, "publish.bind: bind 'localhost:5599' must look like"),
    ("  labels: [person, car]\n", "", 8, "model.labels: required key 'labels' is missing"),
    ("    realtime: false\n", "    realtime: false\n  - id: x\n    url: rtsp://h/s\n    loop: true\n", 10,
     "cameras[2].loop: loop: applies to files only"),
    ("clips/parking.mp4", "clips/missing.mp4", 5, "cameras[1].url: no such file"),
    ("models/detector.onnx", "models/nope.onnx", 9, "model.path: no such file"),
])
def test_errors_are_one_line_with_file_line_and_path(tmp_path: Path, old: str, new: str, line: int,
                                                     expect: str) -> None:
    assert old in GOOD
    path = write_tree(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_config(path, env={"PW": "x"})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:{line}: "), msg
    assert expect in msg, msg


def test_missing_env_variable_names_it(tmp_path: Path) -> None:
    path = write_tree(tmp_path, GOOD)
    with pytest.raises(ConfigError, match=r"cfg.yaml:3: cameras\[0\].url: environment variable \$\{PW\} is not set"):
        load_config(path, env={})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write_tree(tmp_path, GOOD.replace("  input_size: 320", "  input_size: [320"))
    with pytest.raises(ConfigError, match=r"cfg.yaml:\d+: YAML syntax:"):
        load_config(path, env={"PW": "x"})


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n", "cameras: []\nmodel: {path: m, labels: [a]}\n"])
def test_degenerate_documents(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.yaml", env={}, check_files=False)
    assert str(err.value).startswith("c.yaml:")


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


REPO = Path(__file__).resolve().parents[3]
GENERATED = (".cache", ".gpu-media")  # made by scripts/ and git-ignored: not in a fresh clone


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_committed_config_is_valid(name: str, tmp_path: Path) -> None:
    """The shipped examples must pass `pipeline check` as shipped. Inputs that scripts generate
    (bench media and model under .cache/, GPU media) stand in as placeholder files; every other
    file a config names must exist in the repository."""
    import re

    text = (REPO / "configs" / name).read_text()
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / name).write_text(text)
    (tmp_path / "assets").symlink_to(REPO / "assets")
    for rel in re.findall(r"\.\./((?:%s)/[^\s\"',}]+)" % "|".join(re.escape(g) for g in GENERATED), text):
        placeholder = tmp_path / rel
        placeholder.parent.mkdir(parents=True, exist_ok=True)
        placeholder.write_text("person\n")  # a labels file needs a line; media and models only exist
    cfg = load_config(tmp_path / "configs" / name, env={"LOBBY_PASSWORD": "secret"})
    assert cfg.cameras
