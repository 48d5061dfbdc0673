"""scripts/gpu_lab/dmon_stages.py lines a GPU utilisation log up with the bench's stages."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "gpu_lab" / "dmon_stages.py"
spec = importlib.util.spec_from_file_location("dmon_stages", SCRIPT)
dmon_stages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dmon_stages)

BENCH_LOG = """bench 10:00:00: decode: 16 stream(s) for 8 s ...
2026-11-25T10:00:01.000Z INFO something else
bench 10:00:06:   decode: 5000.0 frames/s
bench 10:00:06: inference: onnxruntime on gpu, batch 32 ...
bench 10:00:12:   inference: 4400.0 frames/s
"""
DMON_LOG = "#Time gpu sm mem enc dec jpg ofa\n#HH:MM:SS Idx % % % % % %\n" + "".join(
    f" 10:00:{t:02d}  0  {sm}  3  0  {dec}  0  0\n" for t, sm, dec in [
        (0, 0, 0), (1, 1, 5), (2, 15, 99), (3, 16, 100), (4, 15, 98), (5, 2, 10),   # decode: idle ends
        (6, 0, 0), (7, 0, 0), (8, 0, 0), (9, 97, 0), (10, 96, 0), (11, 98, 0), (12, 0, 0)])


def test_each_stage_gets_the_median_of_its_busy_seconds() -> None:
    lines = dmon_stages.summary(BENCH_LOG, DMON_LOG)
    assert len(lines) == 2
    assert lines[0].split() == ["decode", "SM", "15", "%", "NVDEC", "99", "%", "(3", "of", "7", "s)", "5000.0",
                                "frames/s"]
    assert lines[1].split()[:7] == ["inference", "SM", "97", "%", "NVDEC", "0", "%"]


def test_a_stage_without_samples_says_so() -> None:
    assert "no busy dmon samples" in dmon_stages.summary(BENCH_LOG, "")[0]
