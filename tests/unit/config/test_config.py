"""Config loading: typed models, ${VAR} expansion, one-line errors naming file:line and path."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config, parse_config
from tests.support.tiny_model import build_tiny_yolo_onnx

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
    ("scheduler:", "preprocess: {kernel: fast}\nscheduler:", 12, "preprocess.kernel: 'fast' is not valid; expected 'fused' or 'dali'"),
    ("scheduler:", "decode: {nvdec_output: yuv}\nscheduler:", 12, "decode.nvdec_output: 'yuv' is not valid; expected 'nv12' or 'rgb'"),
    ("max_batch: 8", "max_batch: lots", 12, "scheduler.max_batch: Input should be a valid integer"),
    ('"tcp://127.0.0.1:5599"', '"localhost:5599"', 13, "publish.bind: bind 'localhost:5599' must look like"),
    ("  labels: [person, car]\n", "  labels: [person, car]\n  format: yolo9\n", 11,
     "model.format: 'yolo9' is not valid; expected 'auto', 'yolov8', 'yolov5', 'end2end' or 'yolox'"),
    ("  labels: [person, car]\n", "  labels: [person, car]\n  input: {layout: NCWH}\n", 11,
     "model.input.layout: 'NCWH' is not valid; expected 'NCHW' or 'NHWC'"),
    ("  labels: [person, car]\n", "  labels: [person, car]\n  input: {dtype: uint8, scale: 0.5}\n", 11,
     "model.input: dtype uint8 takes raw pixels"),
    ("    realtime: false\n", "    realtime: false\n  - id: x\n    url: rtsp://h/s\n    loop: true\n", 10,
     "cameras[2].loop: loop: applies to file cameras only (this one is network)"),
    ("  input_size: 320\n", "  input_size: 320\n  backend: tensorrtt\n", 12,
     "model.backend: 'tensorrtt' is not valid; expected 'onnxruntime' or 'tensorrt'"),
    ("    realtime: false\n", "    realtime: false\n    type: rtspp\n", 8,
     "cameras[1].type: 'rtspp' is not valid; expected 'auto', 'synthetic', 'network' or 'file'"),
    ("stream1\n", "stream1\n    loop: true\n", 4,
     "cameras[0].loop: loop: applies to file cameras only (this one is network)"),
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


# bridge.yaml is `pipeline bridge`'s own format: tests/unit/config/test_bridge_config.py loads it
@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml") if p.name != "bridge.yaml"))
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


@pytest.mark.parametrize("old, new, key", [
    ("  input_size: 320\n", "  input_size: 320\n  backend: tensorrtt\n", "model.backend"),
    ("    realtime: false\n", "    realtime: false\n    type: rtspp\n", "cameras[1].type"),
])
def test_check_command_rejects_an_unknown_plugin_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch, old: str, new: str,
                                                     key: str) -> None:
    from pipeline.cli import EXIT_CONFIG, main

    monkeypatch.setenv("PW", "x")
    path = write_tree(tmp_path, GOOD.replace(old, new))
    assert main(["check", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"{path}:") and f": {key}: " in err and "expected" in err, err


@pytest.mark.parametrize("extra, cam_extra, expect", [
    ("gpus: [0, 1]\n", "    gpu: 2\n", "cameras[1].gpu: GPU 2 is not one of gpus [0, 1]"),
    ("", "    gpu: 1\n", "cameras[1].gpu: GPU 1 is not one of decode.gpu_id (set gpus: for several) [0]"),
    ("gpus: [0]\ndecode: {gpu_id: 1}\n", "", "gpus: decode.gpu_id is set too"),
    ("gpus: some\n", "", "gpus: expected a list of GPU ids like [0, 1] or all, got 'some'"),
    ("gpus: [0, 0]\n", "", "gpus: [0, 0] names a GPU twice"),
    ("gpus: [-1]\n", "", "gpus[0]: Input should be greater than or equal to 0"),
])
def test_gpu_keys_are_checked_with_file_and_line(tmp_path: Path, extra: str, cam_extra: str, expect: str) -> None:
    text = GOOD.replace("    realtime: false\n", "    realtime: false\n" + cam_extra) + extra
    with pytest.raises(ConfigError) as err:
        load_config(write_tree(tmp_path, text), env={"PW": "x"})
    msg = str(err.value)
    assert "\n" not in msg and expect in msg and msg.startswith(f"{tmp_path / 'cfg.yaml'}:"), msg


def test_check_prints_the_gpu_assignment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import EXIT_OK, main

    monkeypatch.setenv("PW", "x")
    text = GOOD.replace("    realtime: false\n", "    realtime: false\n    gpu: 1\n") + "gpus: [0, 1]\nfailover: true\n"
    cfg = write_tree(tmp_path, text)
    build_tiny_yolo_onnx(tmp_path / "models" / "detector.onnx", num_classes=2, input_size=320)  # check resolves the model
    assert main(["check", str(cfg)]) == EXIT_OK
    err = capsys.readouterr().err
    assert "#   gpu 0: 1 camera(s), 62.2 Mpx/s: lobby" in err and "#   gpu 1: 1 camera(s), 62.2 Mpx/s: parking" in err


def test_check_with_gpus_all_and_no_gpu_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import EXIT_CONFIG, main

    if Path("/dev/nvidiactl").exists():
        pytest.skip("an NVIDIA driver is loaded here")
    monkeypatch.setenv("PW", "x")
    path = write_tree(tmp_path, GOOD + "gpus: all\n")
    assert main(["check", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert err == f"{path}: gpus: all, but no GPU is visible on this machine", err


def test_a_key_that_looks_like_a_pydantic_location_part_is_still_named(tmp_path: Path) -> None:
    # found by the fuzz test: pydantic's own location parts ("list[constrained-int]") are dropped from
    # the dotted path, and a user's key with brackets in it was dropped too, leaving no key to name
    text = GOOD.replace("scheduler:", "s!!map [1, 2]cheduler:")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cfg.yaml", env={"PW": "x"}, check_files=False)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("cfg.yaml:") and "unknown key 's!!map [1, 2]cheduler'" in msg, msg


def test_a_blank_key_is_named_quoted(tmp_path: Path) -> None:
    # found by the fuzz test: a YAML key ' ' printed bare left "cfg.yaml:35:  : unknown key ' '"
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD + "' ': null\n", "cfg.yaml", env={"PW": "x"}, check_files=False)
    msg = str(err.value)
    assert re.match(r"^cfg\.yaml:\d+: ' ': unknown key ' '$", msg), msg
