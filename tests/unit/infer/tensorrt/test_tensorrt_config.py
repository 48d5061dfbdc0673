"""Config keys of backend tensorrt: model.engine_cache_dir, model.calibration, model.tensorrt."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, parse_config

TEXT = """\
cameras:
  - id: lobby
    url: rtsp://viewer:${PW}@10.0.0.21:554/stream1
  - id: dock
    url: clips/dock.mp4
model:
  path: models/detector.onnx
  labels: [person, car]
  backend: tensorrt
  precision: int8
  engine_cache_dir: cache/engines
  calibration:
    sources: [lobby, dock, extra/night.mp4, "rtsp://10.0.0.9/cal"]
    frames: 200
    batch_size: 4
    cache_file: cache/detector.calib
  tensorrt: {opt_batch: 6, contexts: 3, workspace_mib: 2048, builder_optimization_level: 5}
"""


def test_tensorrt_keys_parse_and_paths_resolve(tmp_path: Path) -> None:
    cfg = parse_config(TEXT, "cfg.yaml", base=tmp_path, env={"PW": "pw"}, check_files=False)
    m = cfg.model
    assert m.engine_cache_dir == tmp_path / "cache/engines"
    assert m.calibration is not None
    assert m.calibration.sources == ["rtsp://viewer:pw@10.0.0.21:554/stream1",  # camera id -> its URL
                                     str(tmp_path / "clips/dock.mp4"),  # camera id -> its resolved file
                                     str(tmp_path / "extra/night.mp4"),  # file relative to the config
                                     "rtsp://10.0.0.9/cal"]
    assert (m.calibration.frames, m.calibration.batch_size) == (200, 4)
    assert m.calibration.cache_file == tmp_path / "cache/detector.calib"
    assert (m.tensorrt.opt_batch, m.tensorrt.contexts, m.tensorrt.workspace_mib,
            m.tensorrt.builder_optimization_level) == (6, 3, 2048, 5)


def test_defaults_need_no_tensorrt_keys(tmp_path: Path) -> None:
    cfg = parse_config("cameras: [{id: a, url: synthetic:64x64}]\nmodel: {path: m.onnx, labels: [x]}\n",
                       "c.yaml", base=tmp_path, check_files=False)
    assert cfg.model.engine_cache_dir is None and cfg.model.calibration is None
    assert cfg.model.tensorrt.contexts == 2 and cfg.model.tensorrt.opt_batch is None


@pytest.mark.parametrize("line, message", [
    ("  tensorrt: {contexts: 0}", r"c.yaml:\d+: model.tensorrt.contexts: Input should be greater than or equal to 1"),
    ("  tensorrt: {streams: 2}", r"c.yaml:\d+: model.tensorrt.streams: unknown key 'streams'"),
    ("  calibration: {frames: 0}", r"c.yaml:\d+: model.calibration.frames: Input should be greater than or equal to 1"),
    ("  calibration: {source: [a]}", r"c.yaml:\d+: model.calibration.source: unknown key 'source'"),
])
def test_bad_tensorrt_keys_are_one_line_errors(tmp_path: Path, line: str, message: str) -> None:
    text = f"cameras: [{{id: a, url: synthetic:64x64}}]\nmodel:\n  path: m.onnx\n  labels: [x]\n{line}\n"
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "c.yaml", base=tmp_path, check_files=False)
