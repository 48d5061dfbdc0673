"""`pipeline bench` runs end to end on tiny inputs and its JSON report has every field.

A smoke test, not a benchmark: the numbers are not judged (the box is shared), only that every stage
ran, measured something plausible and reported it in the documented shape. Real parts throughout:
an encoded clip, the tiny ONNX model, the real daemon, a real ZeroMQ subscriber process.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from pipeline.tools.bench.cli import KNOWN_STAGES
from pipeline.tools.bench.report import STAGES, Drops, Percentiles, Resources, Spread, StageResult
from tests.support.media import make_clip
from tests.support.tiny_model import build_tiny_yolo_onnx

REPO = Path(__file__).resolve().parents[3]
FPS = 25
TOP_KEYS = {"schema", "config", "started_at", "wall_s", "options", "machine", "pipeline", "streams", "stages",
            "summary", "find_max"}
SUMMARY_KEYS = {"ceiling_fps", "ceiling_stage", "e2e_fps", "e2e_ratio", "bottleneck", "bottleneck_fps", "serial_fps",
                "native_fps_per_stream", "realtime_streams_at_ceiling", "realtime_streams_e2e", "realtime_held",
                "stage_us_per_frame", "shared_gpu_ceiling_fps", "e2e_ratio_shared_gpu", "inference_under_decode"}


def names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


@pytest.fixture(scope="module")
def bench_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench")
    build_tiny_yolo_onnx(folder / "tiny.onnx", num_classes=3, input_size=64)
    make_clip(folder / "clip.mp4", 160, 120, 30, fps=FPS)
    config = folder / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "cameras": [{"id": "cam", "url": "clip.mp4"}],
        "model": {"path": "tiny.onnx", "labels": ["red", "green", "blue"], "input_size": 64,
                  "score_threshold": 0.6},
        "scheduler": {"max_batch": 4, "max_wait_ms": 20},
        "metrics": {"bind": None},
    }))
    return config


def bench(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "bench", str(config), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_every_stage_runs_and_the_json_has_every_field(bench_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    run = bench(bench_config, "--streams", "2", "--seconds", "1", "--warmup", "0.3", "--analytics-cameras", "4",
                "--stages", ",".join(KNOWN_STAGES), "--json", str(out))
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())

    assert set(report) == TOP_KEYS
    assert report["schema"] == "pipeline.bench/1" and report["streams"] == 2 and report["find_max"] is None
    assert report["pipeline"]["model_instances"] == 1 and report["pipeline"]["decode_workers"] == 0
    assert set(report["summary"]) == SUMMARY_KEYS
    assert set(report["stages"]) == set(STAGES)
    for name, stage in report["stages"].items():
        assert set(stage) == names(StageResult), name
        assert stage["error"] is None, (name, stage["error"])
        assert stage["stage"] == name and stage["frames"] > 0 and stage["fps"] > 0, stage
        assert set(stage["resources"]) == names(Resources)
        assert stage["resources"]["cpu_percent"] > 0 and stage["resources"]["rss_peak_mib"] > 10
    stages = report["stages"]

    decode = stages["decode"]
    assert decode["streams"] == 2 and set(decode["per_camera_fps"]) == names(Spread)
    for name in ("preprocess", "inference", "postprocess"):
        assert stages[name]["batch_size"] == 4
        call = stages[name]["call_ms"]
        assert set(call) == names(Percentiles) and 0 < call["p50"] <= call["p95"] <= call["p99"] <= call["max"]

    for name in ("e2e_fast", "e2e_realtime"):
        e2e = stages[name]
        assert e2e["streams"] == 2 and set(e2e["per_camera_fps"]) == names(Spread)
        assert e2e["per_camera_fps"]["min"] > 0, e2e  # both streams' messages reached the subscriber
        lat = e2e["latency_ms"]
        assert set(lat) == names(Percentiles) and 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert set(e2e["drops"]) == names(Drops) and e2e["drops"]["frames_decoded"] > 0
    # the model timed again while both streams decode in real time
    loaded = stages["inference_under_decode"]
    assert loaded["streams"] == 2 and loaded["batch_size"] == 4 and loaded["target_fps"] == pytest.approx(2 * FPS)
    assert 0 < loaded["per_camera_fps"]["min"] and loaded["per_camera_fps"]["max"] <= FPS * 1.15, loaded
    assert isinstance(loaded["held"], bool)
    assert report["summary"]["inference_under_decode"]["of_alone"] == pytest.approx(
        loaded["fps"] / stages["inference"]["fps"], rel=1e-3)
    assert stages["e2e_fast"]["held"] is None and stages["e2e_fast"]["target_fps"] is None
    realtime = stages["e2e_realtime"]
    assert realtime["target_fps"] == pytest.approx(2 * FPS)
    assert isinstance(realtime["held"], bool) and realtime["held_reason"]
    # paced at 25 fps a stream cannot publish faster than that (a little slack for the window's edges)
    assert realtime["per_camera_fps"]["max"] <= FPS * 1.15, realtime

    summary = report["summary"]
    assert summary["ceiling_stage"] in ("decode", "inference")
    assert summary["ceiling_fps"] == min(stages["decode"]["fps"], stages["inference"]["fps"])
    assert summary["e2e_ratio"] == pytest.approx(stages["e2e_fast"]["fps"] / summary["ceiling_fps"], rel=1e-3)
    assert summary["native_fps_per_stream"] == FPS
    # the printed table names every stage and the ratio
    for name in STAGES:
        assert name in run.stdout
    assert "end to end / ceiling" in run.stdout


def test_find_max_reports_its_trials(bench_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    run = bench(bench_config, "--find-max", "--max-streams", "2", "--stages", "e2e-realtime", "--seconds", "1",
                "--warmup", "0.3", "--json", str(out))
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    search = report["find_max"]
    assert set(search) == {"max_streams", "limit_reached", "criteria", "trials", "confirmed_streams",
                           "confirm_runs"}
    tried = [t["streams"] for t in search["trials"]]
    # doubling from 1 up to the limit of 2, stopping at the first failure
    assert tried in ([1], [1, 2]), tried
    for t in search["trials"]:
        assert set(t) == {"streams", "held", "reason", "fps", "target_fps", "p99_ms", "drop_fraction"}
        assert t["target_fps"] == pytest.approx(t["streams"] * FPS)
    held = [t["streams"] for t in search["trials"] if t["held"]]
    assert search["max_streams"] == max(held, default=0)
    assert search["limit_reached"] == (search["max_streams"] == 2)
    # then the requested stages run once more at the N found
    assert report["streams"] == max(1, search["max_streams"])
    assert report["stages"]["e2e_realtime"]["streams"] == report["streams"]
    assert report["stages"]["decode"] is None  # not asked for
    # a second run judges the N found: it, or (the full run not holding) the first count below it that held
    full, confirmed = report["stages"]["e2e_realtime"], search["confirmed_streams"]
    if search["max_streams"] >= 1 and full["held"]:
        assert confirmed == search["max_streams"] and search["confirm_runs"] == []
        assert "find-max: confirmed: the full run at" in run.stdout
    else:
        runs = search["confirm_runs"]
        assert [t["streams"] for t in runs] == list(range(search["max_streams"] - 1, 0, -1))[:len(runs)]
        assert confirmed == next((t["streams"] for t in runs if t["held"]), None)


def test_synthetic_detections_are_added_to_every_frame_end_to_end(bench_config: Path, tmp_path: Path) -> None:
    """--detections-per-frame K: the messages carry the model's detections and K more (the bench model's
    random weights find almost none, so the publish and tracking costs of a real model's boxes would
    otherwise be left out); the report says how many a frame went out."""
    plain, added = tmp_path / "plain.json", tmp_path / "added.json"
    for out, extra in ((plain, []), (added, ["--detections-per-frame", "7"])):
        run = bench(bench_config, "--streams", "2", "--stages", "e2e-fast", "--seconds", "1", "--warmup", "0.3",
                    "--json", str(out), *extra)
        assert run.returncode == 0, run.stderr
    without = json.loads(plain.read_text())
    with_added = json.loads(added.read_text())
    assert without["options"]["detections_per_frame"] == 0 and with_added["options"]["detections_per_frame"] == 7
    base = without["stages"]["e2e_fast"]["detections_per_frame"]
    more = with_added["stages"]["e2e_fast"]["detections_per_frame"]
    # the same clip looped: the model's own count per frame averages the same in both windows
    assert more - base == pytest.approx(7, abs=1.0), (base, more)
    assert "synthetic detections added" in run.stdout and "detections a frame published" in run.stdout


def test_bad_options_are_one_line_usage_errors(bench_config: Path) -> None:
    run = bench(bench_config, "--streams", "0")
    assert run.returncode == 2 and run.stderr.strip() == "pipeline bench: --streams 0: need at least 1 stream"
    run = bench(bench_config, "--media", "/nonexistent/clip.mp4")
    assert run.returncode == 2 and "--media /nonexistent/clip.mp4: no such file" in run.stderr
    run = bench(bench_config, "--detections-per-frame", "-1")
    assert run.returncode == 2 and run.stderr.strip() == "pipeline bench: --detections-per-frame -1: must be 0..1000"
    run = bench(bench_config, "--find-max", "--confirm-steps", "65")
    assert run.returncode == 2 and run.stderr.strip() == "pipeline bench: --confirm-steps 65: must be 0..64"


def test_decode_workers_are_measured_in_their_processes(bench_config: Path, tmp_path: Path) -> None:
    # the decode ceiling is measured as the daemon would decode: here in two worker processes
    config = tmp_path / "workers.yaml"
    settings = yaml.safe_load(bench_config.read_text())
    settings["model"]["path"] = str(bench_config.parent / "tiny.onnx")
    settings["cameras"][0]["url"] = str(bench_config.parent / "clip.mp4")
    settings["decode"] = {"workers": 2}
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "report.json"
    run = bench(config, "--streams", "2", "--seconds", "1", "--warmup", "0.5", "--stages", "decode,inference",
                "--json", str(out))
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert report["pipeline"]["decode_workers"] == 2
    assert "decode cpu in 2 worker processes" in run.stdout
    decode = report["stages"]["decode"]
    assert decode["error"] is None and decode["per_camera_fps"]["min"] > 0, decode
    assert decode["resources"]["processes"] == 3  # this one and both workers
    # the batch stages still got frames (from a short run in threads: workers' pictures go with them)
    assert report["stages"]["inference"]["error"] is None and report["stages"]["inference"]["frames"] > 0
    assert report["stages"]["inference"]["resources"]["processes"] == 1


def test_decode_stage_with_a_broken_camera_says_why_without_waiting_for_it(tmp_path: Path) -> None:
    import time

    from pipeline.tools.bench.probe import GpuMemoryReader
    from pipeline.tools.bench.stages import Window, measure_decode
    from pipeline.config import PipelineConfig

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    cfg = PipelineConfig.model_validate({
        "cameras": [{"id": "bad", "url": str(broken)}],
        "model": {"path": str(tmp_path / "unused.onnx"), "labels": ["x"], "input_size": 64},
        "metrics": {"bind": None}})
    started = time.monotonic()
    result, frames = measure_decode(cfg.cameras, cfg, Window(0.2, 0.5), keep=4, gpu=GpuMemoryReader())
    assert time.monotonic() - started < 20  # the wait for first frames ends when the camera fails
    assert frames == [] and result.frames == 0
    assert result.error.startswith("no frames decoded (bad: down:"), result.error


def test_inference_with_two_model_instances_runs_them_on_two_threads_at_once(tmp_path: Path) -> None:
    # model.instances: 2 is measured as the daemon runs it: each copy prepared and run on its own thread
    import threading

    import numpy as np

    from pipeline.tools.bench.probe import GpuMemoryReader
    from pipeline.tools.bench.stages import measure_inference
    from pipeline.config import ModelConfig
    from pipeline.frame import Frame, LetterboxTransform, TensorBatch
    from pipeline.infer.onnxruntime.backend import OnnxRuntimeBackend

    path = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=3, input_size=64)
    model = ModelConfig(path=path, labels=["r", "g", "b"], input_size=64, instances=2)
    backends = [OnnxRuntimeBackend(model, 4, intra_op_threads=1) for _ in range(2)]
    seen: dict[int, set[str]] = {id(b): set() for b in backends}
    bound: list[str] = []
    for b in backends:
        def run(batch, original=b.infer, key=id(b)):
            seen[key].add(threading.current_thread().name)
            return original(batch)
        b.infer = run  # recording only: the real ONNX Runtime call runs
        b.bind_to_thread = lambda: bound.append(threading.current_thread().name)
    frames = tuple(Frame("cam", i, None, 0.0, 64, 64, None) for i in range(4))
    tensor = TensorBatch(frames, tuple(LetterboxTransform.fit(64, 64, 64) for _ in frames),
                         np.random.default_rng(0).random((4, 3, 64, 64), np.float32), 0.0)
    result, output = measure_inference(backends, tensor, 0.5, GpuMemoryReader())
    assert len(bound) == 2 and len(set(bound)) == 2 and threading.current_thread().name not in bound
    assert [len(names) for names in seen.values()] == [1, 1] and seen[id(backends[0])] != seen[id(backends[1])]
    assert result.error is None and result.frames % 4 == 0 and result.frames >= 2 * 3 * 4
    # throughput over the window's wall time, not the sum of overlapping calls
    assert 0.5 <= result.seconds < 5 and result.fps == pytest.approx(result.frames / result.seconds, rel=0.01)
    assert output.output.shape[0] == 4
