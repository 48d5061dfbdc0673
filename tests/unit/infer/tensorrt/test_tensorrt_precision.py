"""Precision fallback rules and the build progress display. Pure Python."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.infer.tensorrt.build import PrecisionSupport, fast_precisions, precision_support, resolve_precision
from pipeline.infer.tensorrt.engine_cache import GpuIdentity
from pipeline.infer.tensorrt.progress import PhaseLines

H200 = GpuIdentity("NVIDIA H200", "9.0")
FULL = PrecisionSupport(fp16_flag=True, int8_calibration=True, fast_fp16=True, fast_int8=True)


@pytest.mark.parametrize("cc, fp16, int8", [((5, 2), False, False), ((5, 3), True, False), ((6, 0), True, False),
                                            ((6, 1), False, True), ((7, 5), True, True), ((9, 0), True, True)])
def test_fast_precisions_by_compute_capability(cc: tuple[int, int], fp16: bool, int8: bool) -> None:
    assert fast_precisions(cc) == (fp16, int8)


@pytest.mark.parametrize("requested", ["fp32", "fp16", "int8"])
def test_full_support_keeps_the_requested_precision(requested: str) -> None:
    assert resolve_precision(requested, FULL, "10.16", H200) == (requested, [])


def test_int8_without_fast_int8_falls_back_to_fp16() -> None:
    support = PrecisionSupport(True, True, fast_fp16=True, fast_int8=False)
    precision, warnings = resolve_precision("int8", support, "10.16", GpuIdentity("Tesla P100", "6.0"))
    assert precision == "fp16"
    assert warnings == ["precision int8: TensorRT 10.16 on Tesla P100 (sm 6.0) has no fast INT8; falling back to fp16"]


def test_int8_on_a_gpu_without_fast_fp16_or_int8_ends_at_fp32() -> None:
    support = PrecisionSupport(True, True, fast_fp16=False, fast_int8=False)
    precision, warnings = resolve_precision("int8", support, "10.16", GpuIdentity("Old", "5.2"))
    assert precision == "fp32" and len(warnings) == 2


def test_tensorrt_11_has_no_calibrator_and_no_fp16_flag() -> None:
    support = PrecisionSupport(fp16_flag=False, int8_calibration=False, fast_fp16=True, fast_int8=True)
    precision, warnings = resolve_precision("int8", support, "11.4.0.106", H200)
    assert precision == "fp32"
    assert "no INT8 calibration API" in warnings[0] and "no FP16 builder flag" in warnings[1]


def test_support_prefers_the_builders_answer_when_it_has_one() -> None:
    trt = SimpleNamespace(BuilderFlag=SimpleNamespace(FP16=1, INT8=2), IInt8EntropyCalibrator2=object)
    old_builder = SimpleNamespace(platform_has_fast_fp16=False, platform_has_fast_int8=True)
    assert precision_support(trt, old_builder, H200) == PrecisionSupport(True, True, False, True)
    new_builder = SimpleNamespace()  # TensorRT >= 10.5 deprecates these queries; 11 removes them
    assert precision_support(trt, new_builder, GpuIdentity("GTX 1080", "6.1")) == PrecisionSupport(True, True, False, True)


# ------------------------------------------------------------------ progress lines


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_phase_lines_show_nesting_steps_and_ends() -> None:
    lines: list[str] = []
    clock = Clock()
    p = PhaseLines(lines.append, min_interval_s=1.0, clock=clock)
    p.phase_start("Building engine", None, 3)
    p.phase_start("Tactic timing", "Building engine", 10)
    for step in range(10):
        clock.now += 0.3
        assert p.step_complete("Tactic timing", step)
    p.phase_finish("Tactic timing")
    p.phase_start("one-step leaf", "Building engine", 1)
    p.phase_finish("one-step leaf")
    p.phase_finish("Building engine")
    assert lines[0] == "[start] Building engine (3 steps)"
    assert lines[1] == "[start] Building engine > Tactic timing (10 steps)"
    steps = [line for line in lines if line.startswith("[") and "/10]" in line]
    assert 2 <= len(steps) <= 4  # at most one step line per second of (fake) time
    assert steps[0].startswith("[ 4/10] Building engine > Tactic timing")
    assert lines[-2:] == ["[done]  Building engine > Tactic timing", "[done]  Building engine"]
    assert not any("one-step leaf" in line for line in lines)


def test_cancel_makes_step_complete_return_false() -> None:
    p = PhaseLines(lambda line: None)
    p.phase_start("Building engine", None, 2)
    assert p.step_complete("Building engine", 0)
    p.cancel.set()
    assert not p.step_complete("Building engine", 1)
