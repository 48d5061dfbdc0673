"""Build a serialized TensorRT engine from an ONNX file (TensorRT 10 Python API).

builder -> network (explicit batch) -> OnnxParser -> checks on the image input and the YOLO
output (for a model with candidate selection appended, the [B, 6, K] candidates output; see
trt_candidates.py) -> builder config (workspace, optimization level, precision, one optimization
profile per execution context, INT8 calibrator, timing cache, progress monitor) -> plan bytes.

The TensorRT module is a parameter (`trt`): production passes `tensorrt`; the tests pass
TensorRT-RTX's `tensorrt_rtx`, whose builder API is the same for everything used here and builds
on a CPU-only machine when told which GPU to build for (the `configure` hook).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.frame import CANDIDATE_ROWS
from pipeline.infer.tensorrt.calibrator import CalibratorFeed, entropy_calibrator
from pipeline.infer.tensorrt.engine_cache import GpuIdentity, ProfileShapes, batch_profile
from pipeline.infer.tensorrt.progress import PhaseLines, progress_monitor

log = logging.getLogger(__name__)

MIB = 1 << 20


class EngineBuildError(RuntimeError):
    """The engine could not be built; the message is one line naming the model and the cause."""


@dataclass(frozen=True)
class CandidateNetwork:
    """The configured model with candidate selection appended, as a file the parser reads."""

    path: Path  # in the engine cache folder (trt_candidates.py)
    sha256: str  # of that file: part of the engine key
    max_candidates: int  # K: the output is [B, 6, min(K, N)]


@dataclass(frozen=True)
class BuildRequest:
    onnx_path: Path  # the configured model; messages name it
    input_size: int
    num_classes: int
    max_batch: int
    opt_batch: int | None
    precision: str  # fp32 | fp16 | int8 as configured
    contexts: int  # optimization profiles to build, one per execution context
    workspace_mib: int
    builder_optimization_level: int
    calibration_batch: int = 8
    candidates: CandidateNetwork | None = None  # build this file instead: output [B, 6, K]

    @property
    def network_path(self) -> Path:
        """The file the parser reads: the candidates model when there is one, else the ONNX model."""
        return self.candidates.path if self.candidates is not None else self.onnx_path


@dataclass(frozen=True)
class BuiltEngine:
    plan: bytes
    timing_cache: bytes | None
    precision: str  # what the engine was actually built with
    profile: ProfileShapes
    input_name: str
    warnings: tuple[str, ...]
    seconds: float
    calibration_batches: int = 0
    output_name: str = ""
    output_shape: tuple[int, ...] = ()  # the network's first output as parsed, -1 where dynamic


@dataclass(frozen=True)
class PrecisionSupport:
    """What this TensorRT and GPU offer; see `precision_support`."""

    fp16_flag: bool  # BuilderFlag.FP16 exists (TensorRT 10; gone in 11 and in TensorRT-RTX)
    int8_calibration: bool  # BuilderFlag.INT8 and IInt8EntropyCalibrator2 exist (TensorRT 10)
    fast_fp16: bool
    fast_int8: bool


def fast_precisions(capability: tuple[int, int]) -> tuple[bool, bool]:
    """(fast fp16, fast int8) by compute capability, as TensorRT's deprecated platform queries
    answered: fp16 at full rate on 5.3, 6.0, 6.2 and >= 7.0 (not 6.1), int8 (dp4a) from 6.1."""
    fp16 = capability in ((5, 3), (6, 0), (6, 2)) or capability >= (7, 0)
    int8 = capability >= (6, 1)
    return fp16, int8


def precision_support(trt: Any, builder: Any, gpu: GpuIdentity) -> PrecisionSupport:
    flags = getattr(trt, "BuilderFlag", None)
    fp16_cc, int8_cc = fast_precisions(gpu.capability)
    # platform_has_fast_* are deprecated since TensorRT 10.5 (removed in 11): ask them only if present
    fast_fp16 = getattr(builder, "platform_has_fast_fp16", None)
    fast_int8 = getattr(builder, "platform_has_fast_int8", None)
    return PrecisionSupport(
        fp16_flag=hasattr(flags, "FP16"),
        int8_calibration=hasattr(flags, "INT8") and hasattr(trt, "IInt8EntropyCalibrator2"),
        fast_fp16=bool(fast_fp16) if isinstance(fast_fp16, bool) else fp16_cc,
        fast_int8=bool(fast_int8) if isinstance(fast_int8, bool) else int8_cc)


def resolve_precision(requested: str, support: PrecisionSupport, trt_version: str, gpu: GpuIdentity
                      ) -> tuple[str, list[str]]:
    """The precision to build with and the warnings that explain any fallback (int8 -> fp16 -> fp32)."""
    warnings: list[str] = []
    where = f"TensorRT {trt_version} on {gpu.name} (sm {gpu.compute_capability})"
    precision = requested
    if precision == "int8":
        if not support.int8_calibration:
            warnings.append(f"precision int8: {where} has no INT8 calibration API (TensorRT 11 needs a "
                            f"Q/DQ-quantized model); falling back to fp16")
            precision = "fp16"
        elif not support.fast_int8:
            warnings.append(f"precision int8: {where} has no fast INT8; falling back to fp16")
            precision = "fp16"
    if precision == "fp16":
        if not support.fp16_flag:
            warnings.append(f"precision fp16: {where} has no FP16 builder flag (strongly typed networks "
                            f"only); the engine follows the ONNX model's types (fp32 here)")
            precision = "fp32"
        elif not support.fast_fp16:
            warnings.append(f"precision fp16: {where} has no fast FP16; falling back to fp32")
            precision = "fp32"
    return precision, warnings


def parser_errors(parser: Any, onnx_path: Path) -> str:
    """All ONNX parser errors in one line, each naming its node (name, operator, index)."""
    parts = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        desc = " ".join(str(err.desc()).split())
        node = int(err.node())
        name = err.node_name() if hasattr(err, "node_name") else ""
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        if node >= 0 or name:
            label = f"node {name!r}" if name else f"node #{node}"
            label += f" ({op}, #{node})" if op else ""
            parts.append(f"{label}: {desc}")
        else:
            parts.append(desc)
    return f"{onnx_path}: ONNX parser: " + ("; ".join(parts) or "failed without an error message")


def _dims(shape: Any) -> list[int]:
    return [int(d) for d in shape]


def label_mismatch(where: Path, name: str, shape: list[int], num_classes: int) -> str:
    """The message for a [B, 4+C, N] output whose C is not the number of labels (shape: -1 = dynamic)."""
    return (f"{where}: model output {name!r} is {shape}: {shape[1] - 4} classes, but model.labels has "
            f"{num_classes}")


def inspect_network(network: Any, request: BuildRequest) -> tuple[str, int | None]:
    """Check the parsed network has one [B,3,S,S] input and a [B,4+C,N] first output ([B,6,K] with
    K <= max_candidates when the request builds the candidates model; its 4+C rows were checked on
    the model's own output before candidate selection was appended). Returns (input name, fixed
    batch or None)."""
    where = request.onnx_path
    if network.num_inputs == 0 and network.num_layers == 0:
        raise EngineBuildError(f"{where}: ONNX parser: no graph in the file (not an ONNX model?)")
    if network.num_inputs != 1:
        names = [network.get_input(i).name for i in range(network.num_inputs)]
        raise EngineBuildError(f"{where}: model has {network.num_inputs} inputs ({', '.join(names)}); "
                               f"expected one image input [B, 3, S, S]")
    inp = network.get_input(0)
    shape = _dims(inp.shape)
    s = request.input_size
    if len(shape) != 4 or shape[1] not in (3, -1) or any(d not in (s, -1) for d in shape[2:]):
        raise EngineBuildError(f"{where}: model input {inp.name!r} is {shape}; expected [B, 3, {s}, {s}] "
                               f"(model.input_size {s})")
    if network.num_outputs < 1:
        raise EngineBuildError(f"{where}: model has no outputs")
    out = network.get_output(0)
    out_shape = _dims(out.shape)
    if request.candidates is not None:
        k = request.candidates.max_candidates
        k_ok = len(out_shape) == 3 and (out_shape[2] == -1 or 1 <= out_shape[2] <= k)
        if not k_ok or out_shape[1] != CANDIDATE_ROWS:
            raise EngineBuildError(f"{where}: output {out.name!r} of the candidates model "
                                   f"{request.candidates.path} is {out_shape}; expected [B, {CANDIDATE_ROWS}, K] "
                                   f"with K <= {k} (model.max_candidates)")
        return inp.name, (shape[0] if shape[0] > 0 else None)
    want = 4 + request.num_classes
    if len(out_shape) != 3:
        raise EngineBuildError(f"{where}: model output {out.name!r} is {out_shape}; expected [B, 4+classes, N]")
    if out_shape[1] not in (want, -1):
        raise EngineBuildError(label_mismatch(where, out.name, out_shape, request.num_classes))
    return inp.name, (shape[0] if shape[0] > 0 else None)


def build_engine(trt: Any, request: BuildRequest, gpu: GpuIdentity, *, logger: Any,
                 timing_cache: bytes | None = None, progress: PhaseLines | None = None,
                 calibrator_feed: Callable[[ProfileShapes, np.dtype], CalibratorFeed] | None = None,
                 configure: Callable[[Any], None] | None = None) -> BuiltEngine:
    """Parse, configure and build. `calibrator_feed(profile, input dtype)` supplies INT8 data;
    `configure(builder_config)` adds platform settings (e.g. TensorRT-RTX's target GPU)."""
    started = time.monotonic()
    if hasattr(logger, "last_error"):
        logger.last_error = ""  # the logger lives as long as the process: forget older builds' errors
    phase = progress or PhaseLines(lambda line: log.info("engine build: %s", line))
    phase.phase_start("Parsing ONNX", None, 1)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(request.network_path)):  # from file: external weights resolve
        message = parser_errors(parser, request.network_path)
        if request.candidates is not None:  # the model's own graph may parse: say how to build that
            message += "; model.max_candidates: null builds the model's own output instead"
        raise EngineBuildError(message)
    input_name, fixed_batch = inspect_network(network, request)
    output = network.get_output(0)
    output_name, output_shape = output.name, tuple(_dims(output.shape))
    phase.phase_finish("Parsing ONNX")

    profile = batch_profile(request.max_batch, request.input_size, request.opt_batch, fixed_batch)
    if fixed_batch is not None and fixed_batch != request.max_batch:
        log.warning("%s: input batch is fixed at %d; scheduler.max_batch %d is capped to it",
                    request.onnx_path, fixed_batch, request.max_batch)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_mib * MIB)
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = request.builder_optimization_level
    for _ in range(request.contexts):
        # identical profiles, one per execution context, so contexts never share one while in flight;
        # the timing cache makes every profile after the first nearly free to tune
        p = builder.create_optimization_profile()
        p.set_shape(input_name, profile.min, profile.opt, profile.max)
        if config.add_optimization_profile(p) < 0:
            raise EngineBuildError(f"{request.onnx_path}: optimization profile {profile.min}/{profile.opt}/"
                                   f"{profile.max} for {input_name!r} was rejected")

    support = precision_support(trt, builder, gpu)
    precision, warnings = resolve_precision(request.precision, support, getattr(trt, "__version__", "?"), gpu)
    for w in warnings:
        log.warning("%s: %s", request.onnx_path, w)
    feed: CalibratorFeed | None = None
    if precision == "fp16":
        # the preprocessor hands float16 for model.precision fp16: make it the engine's input type so
        # DALI's buffer binds as it is (after a fallback to fp32 the input stays float32: the
        # preprocessor must then follow the backend's input_dtype)
        network.get_input(0).dtype = trt.float16
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 engines keep fp16 for layers int8 cannot run
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if calibrator_feed is None:
            raise EngineBuildError(f"{request.onnx_path}: precision int8 needs model.calibration")
        input_dtype = np.dtype(trt.nptype(network.get_input(0).dtype))
        feed = calibrator_feed(profile, input_dtype)
        batch = feed.get_batch_size()
        calib = builder.create_optimization_profile()
        calib_shape = profile.shape(batch)
        calib.set_shape(input_name, calib_shape, calib_shape, calib_shape)  # calibration runs at kOPT
        config.set_calibration_profile(calib)
        config.int8_calibrator = entropy_calibrator(trt, feed)

    cache = None
    if hasattr(config, "create_timing_cache"):
        cache = config.create_timing_cache(timing_cache or b"")
        if cache is not None and not config.set_timing_cache(cache, ignore_mismatch=False):
            log.warning("%s: timing cache does not match this GPU/TensorRT; starting a new one", request.onnx_path)
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, ignore_mismatch=False)

    monitor = progress_monitor(trt, phase)
    if monitor is not None:
        config.progress_monitor = monitor
    if configure is not None:
        configure(config)

    if monitor is None:
        phase.phase_start("Building engine", None, 1)
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if feed is not None:
            feed.close()
    if monitor is None:
        phase.phase_finish("Building engine")
    if feed is not None and feed.error is not None:
        raise EngineBuildError(f"{request.onnx_path}: INT8 calibration failed: {feed.error}")
    if plan is None:
        reason = getattr(logger, "last_error", "") or "see the TensorRT errors logged above"
        raise EngineBuildError(f"{request.onnx_path}: TensorRT could not build the engine: {reason}")

    timing = None
    built_cache = config.get_timing_cache() if cache is not None else None
    if built_cache is not None:
        timing = bytes(memoryview(built_cache.serialize()))
    return BuiltEngine(plan=bytes(memoryview(plan)), timing_cache=timing, precision=precision, profile=profile,
                       input_name=input_name, warnings=tuple(warnings), seconds=time.monotonic() - started,
                       calibration_batches=feed.batches_served if feed else 0, output_name=output_name,
                       output_shape=output_shape)
