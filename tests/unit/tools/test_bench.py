"""The benchmark's pure parts: the --find-max search, the real-time verdict, the summary, the streams."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.tools.bench.command import confirm_below, confirmation_line, find_max_streams
from pipeline.tools.bench.e2e import HoldCriteria, judge
from pipeline.tools.bench.report import (Drops, Percentiles, Resources, Spread, StageResult, failed, format_table,
                                   stage_from_json, summarise)
from pipeline.tools.bench.streams import bench_cameras, native_fps
from pipeline.config import parse_config
from tests.support.media import make_clip


def search(threshold: int, start: int, limit: int) -> tuple[int, list[int]]:
    """find_max_streams against a pipeline that holds up to `threshold` streams."""
    tried: list[int] = []

    def holds(n: int) -> bool:
        tried.append(n)
        return n <= threshold

    return find_max_streams(holds, start, limit), tried


@pytest.mark.parametrize("threshold", [0, 1, 2, 3, 5, 37, 64, 85, 100, 1023, 1024, 5000])
def test_find_max_finds_the_exact_threshold(threshold: int) -> None:
    best, tried = search(threshold, start=1, limit=1024)
    assert best == min(threshold, 1024)
    assert len(tried) == len(set(tried))  # no N is run twice
    assert len(tried) <= 2 * 11  # doubling to 1024 then bisecting: logarithmic


def test_find_max_doubles_then_bisects() -> None:
    assert search(85, start=1, limit=1024)[1] == [1, 2, 4, 8, 16, 32, 64, 128, 96, 80, 88, 84, 86, 85]


def test_find_max_bisects_below_a_start_that_fails() -> None:
    best, tried = search(5, start=16, limit=1024)
    assert best == 5 and tried[0] == 16 and max(tried[1:]) < 16


def test_find_max_stops_at_the_limit() -> None:
    best, tried = search(10_000, start=3, limit=20)
    assert best == 20 and tried == [3, 6, 12, 20]


def test_confirm_below_steps_down_to_the_first_count_that_holds() -> None:
    tried: list[int] = []

    def holds(n: int) -> bool:
        tried.append(n)
        return n <= 135

    assert confirm_below(holds, 138, steps=3) == 135 and tried == [137, 136, 135]
    tried.clear()
    assert confirm_below(holds, 140, steps=3) is None and tried == [139, 138, 137]
    tried.clear()
    assert confirm_below(holds, 138, steps=0) is None and tried == []
    assert confirm_below(lambda n: False, 2, steps=5) is None  # never below 1


def full_run(held: bool, reason: str = "dropped 1.0% > 1.0%") -> dict:
    return {"held": held, "held_reason": "ok" if held else reason, "error": None}


def test_the_confirmation_line_says_what_a_second_run_made_of_n() -> None:
    search = {"max_streams": 138, "confirmed_streams": 138, "confirm_runs": []}
    assert confirmation_line(search, full_run(True)) == "confirmed: the full run at 138 held too"
    search = {"max_streams": 138, "confirmed_streams": 137,
              "confirm_runs": [{"streams": 137, "held": True}]}
    assert confirmation_line(search, full_run(False)) == (
        "the full run at 138 did not hold (dropped 1.0% > 1.0%); confirmed: 137 held (137:held)")
    search = {"max_streams": 138, "confirmed_streams": None,
              "confirm_runs": [{"streams": 137, "held": False}, {"streams": 136, "held": False}]}
    assert confirmation_line(search, full_run(False)).endswith("nothing below it held either (137:no, 136:no)")
    assert "add e2e-realtime" in confirmation_line({"max_streams": 5, "confirmed_streams": None}, None)


def drops(dropped: int = 0, lost: int = 0, decoded: int = 1000) -> Drops:
    return Drops(dropped, {"overflow": dropped} if dropped else {}, lost, 0, decoded, (dropped + lost) / decoded)


LAT = Percentiles(20.0, 40.0, 60.0, 80.0)


def test_judge_names_the_first_reason_a_realtime_run_did_not_hold() -> None:
    c = HoldCriteria(max_drop_fraction=0.01, max_p99_s=1.0, min_rate=0.95)
    assert judge(100.0, 100.0, drops(), LAT, c) == (True, "ok")
    assert judge(95.0, 100.0, drops(10), LAT, c) == (True, "ok")  # exactly on both bounds
    held, why = judge(94.0, 100.0, drops(), LAT, c)
    assert not held and why.startswith("published 94.0 < 95% of 100.0")
    held, why = judge(100.0, 100.0, drops(dropped=8, lost=3), LAT, c)
    assert not held and why.startswith("dropped 1.1%")
    held, why = judge(100.0, 100.0, drops(), Percentiles(20.0, 40.0, 1001.0, 1200.0), c)
    assert not held and why == "p99 latency 1001 ms > 1000 ms"
    assert judge(100.0, None, drops(), LAT, c) == (True, "ok")  # network streams: rate unknown
    assert judge(0.0, 100.0, drops(), None, c) == (False, "nothing published")


def stage(name: str, fps: float) -> StageResult:
    return StageResult(name, 4, None, 1.0, int(fps), fps, Spread(1.0, 2.0, 3.0), None, LAT, None, drops(), None,
                       None, Resources(150.0, 300.0, None))


def test_summary_ratio_and_bottleneck() -> None:
    stages = {"decode": stage("decode", 400.0), "preprocess": stage("preprocess", 800.0),
              "inference": stage("inference", 200.0), "postprocess": stage("postprocess", 4000.0),
              "e2e_fast": stage("e2e_fast", 150.0)}
    s = summarise(stages, native_fps=25.0)
    assert s["ceiling_stage"] == "inference" and s["ceiling_fps"] == 200.0
    assert s["e2e_ratio"] == 0.75 and s["bottleneck"] == "inference"
    assert s["serial_fps"] == pytest.approx(1 / (1 / 400 + 1 / 800 + 1 / 200 + 1 / 4000), abs=1e-3)
    assert s["realtime_streams_at_ceiling"] == 8.0 and s["realtime_streams_e2e"] == 6.0
    assert s["realtime_held"] is None
    table = format_table(stages, s)
    assert "end to end / ceiling = 150.0 / 200.0 = 0.75" in table and "(inference)" in table


def test_shared_gpu_ceiling_adds_the_sm_time_of_preprocess_and_inference() -> None:
    """1 / (GPU time per frame of preprocess + inference), capped by decode: the stage's own CUDA
    event timing where it has one, else 1/fps alone."""
    from dataclasses import replace

    stages = {"decode": stage("decode", 5000.0), "preprocess": replace(stage("preprocess", 20000.0), gpu_us_per_frame=3.0),
              "inference": stage("inference", 4000.0), "e2e_fast": stage("e2e_fast", 3600.0)}
    s = summarise(stages, native_fps=30.0, shared_gpu=True)
    assert s["stage_us_per_frame"] == {"preprocess": {"us": 3.0, "from": "cuda events"},
                                       "inference": {"us": 250.0, "from": "1/fps alone"}}
    assert s["shared_gpu_ceiling_fps"] == pytest.approx(1e6 / 253.0, abs=1e-3)
    assert s["e2e_ratio_shared_gpu"] == pytest.approx(3600.0 / (1e6 / 253.0), abs=1e-4)
    assert "shared-GPU ceiling min(decode, 1 / sum of GPU time per frame) = 3952.6" in format_table(stages, s)
    stages["decode"] = stage("decode", 3000.0)
    assert summarise(stages, 30.0, shared_gpu=True)["shared_gpu_ceiling_fps"] == 3000.0
    assert summarise(stages, 30.0)["shared_gpu_ceiling_fps"] is None  # cpu preprocess: no shared GPU


def test_inference_under_decode_is_set_against_the_model_alone_and_the_cameras_rate() -> None:
    """What decoding N real-time cameras leaves the model: its frames/s, that over the model alone, and
    what the cameras send; a failed or absent stage gives None, not a made-up figure."""
    from dataclasses import replace

    loaded = replace(stage("inference_under_decode", 4100.0), streams=135, target_fps=4050.0, held=True)
    stages = {"inference": stage("inference", 4400.0), "inference_under_decode": loaded}
    s = summarise(stages, 30.0)
    assert s["inference_under_decode"] == {"streams": 135, "fps": 4100.0, "target_fps": 4050.0,
                                           "of_alone": pytest.approx(4100.0 / 4400.0, abs=1e-4)}
    assert ("inference while 135 cameras decode in real time: 4100.0 frames/s (0.93 of the model alone); "
            "the cameras send 4050.0") in format_table(stages, s)
    stages["inference_under_decode"] = failed("inference_under_decode", "no frames decoded", 135, 32)
    assert summarise(stages, 30.0)["inference_under_decode"] is None
    assert summarise({"inference": stage("inference", 4400.0)}, 30.0)["inference_under_decode"] is None


def test_the_table_names_the_end_to_end_runs_garbage_collector_pauses() -> None:
    from dataclasses import replace

    fast = replace(stage("e2e_fast", 150.0), seconds=8.0,
                   resources=Resources(150.0, 300.0, None, 1, gc_collections=12, gc_pause_ms=40.0, gc_pause_max_ms=31.5))
    stages = {"inference": stage("inference", 200.0), "e2e_fast": fast}
    table = format_table(stages, summarise(stages, None))
    assert "e2e_fast: garbage collector ran 12 times, 40 ms in all (0.5% of the window), longest 31.5 ms" in table
    assert stage_from_json(fast.to_json()) == fast
    old = fast.to_json()  # a report from before the fields existed still prints
    for key in ("gc_collections", "gc_pause_ms", "gc_pause_max_ms"):
        del old["resources"][key]
    assert "garbage" not in format_table({"e2e_fast": stage_from_json(old)}, summarise(stages, None))


def test_summary_skips_failed_stages() -> None:
    stages = {"decode": failed("decode", "boom", 2), "inference": stage("inference", 200.0)}
    s = summarise(stages, None)
    assert s["ceiling_stage"] == "inference" and s["e2e_ratio"] is None and s["realtime_streams_at_ceiling"] is None
    assert "FAILED: boom" in format_table(stages, s)


def test_stage_json_round_trip() -> None:
    for r in (stage("e2e_fast", 10.0), failed("decode", "no frames", 3)):
        assert stage_from_json(r.to_json()) == r


def test_streams_cycle_the_cameras_and_loop_files(tmp_path: Path) -> None:
    make_clip(tmp_path / "a.mp4", 64, 48, 5, fps=20)
    cfg = parse_config("cameras:\n  - {id: a, url: a.mp4}\n  - {id: s, url: 'synthetic:64x48@12'}\n"
                       "model: {path: m.onnx, labels: [x]}\n", base=tmp_path, check_files=False)
    cams = bench_cameras(cfg, 5, realtime=True)
    assert [c.id for c in cams] == ["a-0", "s-1", "a-2", "s-3", "a-4"]
    assert [c.loop for c in cams] == [True, False, True, False, True] and all(c.realtime for c in cams)
    assert [native_fps(c) for c in cams[:2]] == [20.0, 12.0]
    assert not any(c.realtime for c in bench_cameras(cfg, 2, realtime=False))
    media = bench_cameras(cfg, 2, realtime=False, media=tmp_path / "a.mp4")
    assert [(c.id, c.type, Path(c.url).name) for c in media] == [("media-0", "file", "a.mp4"), ("media-1", "file", "a.mp4")]
    with pytest.raises(ValueError, match="--streams 0"):
        bench_cameras(cfg, 0, realtime=True)


def test_inference_under_decode_refuses_two_model_copies(tmp_path: Path) -> None:
    """A second copy would record its CUDA graphs on its own thread while the cameras decode, which
    ONNX Runtime cannot do; the stage says so instead of running."""
    from pipeline.tools.bench.command import BenchOptions, BenchRun

    cfg = parse_config("cameras:\n  - {id: s, url: 'synthetic:64x48@12'}\nmodel: {path: m.onnx, labels: [x]}\n",
                       base=tmp_path, check_files=False)
    said: list[str] = []
    run = BenchRun(cfg, BenchOptions(streams=3, stages=("inference-under-decode",)), said.append)
    result = run._inference_under_decode([object(), object()], None, 3)
    assert result.stage == "inference_under_decode" and result.streams == 3
    assert result.error == "runs with model.instances 1 only (the config has 2)"
    assert said == ["  inference_under_decode: FAILED: runs with model.instances 1 only (the config has 2)"]
    with pytest.raises(ValueError, match="unknown inference-under-decod"):
        BenchOptions(streams=1, stages=("inference-under-decod",))
