"""`pipeline build-engine CONFIG`: build (or verify) the TensorRT engine ahead of time, so a
systemd start never waits on a build. It calls the daemon's own prepare_engine with the config's
model section, so it builds the engine the daemon loads (same key, same model.max_candidates, same
candidates model). Progress goes to stderr (TensorRT's IProgressMonitor where the installed
TensorRT has one, else phase lines); the result is one line on stdout.

Exit codes: 0 engine ready, 1 could not build/verify (TensorRT or GPU missing, build failed,
`--check` found no valid engine).
"""
from __future__ import annotations

import sys
from typing import Any, TextIO

from pipeline.config import PipelineConfig
from pipeline.infer.tensorrt.build import EngineBuildError
from pipeline.infer.tensorrt.calibrator import CalibrationError
from pipeline.gpu.buffers import DeviceBuffer
from pipeline.gpu.runtime import CudaError
from pipeline.infer.tensorrt.cuda import gpu_identity, load_cuda_runtime, set_device
from pipeline.infer.tensorrt.engine import PreparedEngine, output_summary, prepare_engine
from pipeline.infer.tensorrt.progress import PhaseLines, python_logger

NOT_INSTALLED = ("pipeline build-engine: tensorrt is not installed: pip install 'pipeline[tensorrt]' "
                 "(TensorRT 10 and cuda-python; building needs the NVIDIA GPU the engine is for)")


def build_engine_command(cfg: PipelineConfig, config_path: str, *, gpu_index: int = 0, force: bool = False,
                         check_only: bool = False, out: TextIO | None = None, err: TextIO | None = None,
                         trt_module: Any = None, cuda_runtime: Any = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr

    def fail(message: str) -> int:
        print(f"pipeline build-engine: {message}", file=err)
        return 1

    trt = trt_module
    if trt is None:
        try:
            import tensorrt as trt
        except ImportError:
            print(NOT_INSTALLED, file=err)
            return 1
    try:
        rt = cuda_runtime if cuda_runtime is not None else load_cuda_runtime()
        set_device(rt, gpu_index)
        gpu = gpu_identity(rt, gpu_index)
    except (RuntimeError, CudaError) as exc:
        return fail(f"no usable GPU {gpu_index}: {exc}")
    if cfg.model.backend != "tensorrt":
        print(f"pipeline build-engine: note: {config_path} has model.backend {cfg.model.backend}; building the "
              f"tensorrt engine anyway", file=err)

    progress = PhaseLines(lambda line: print(f"build-engine: {line}", file=err, flush=True))
    logger = python_logger(trt)
    common = dict(progress=progress, logger=logger, device_upload=lambda nbytes: DeviceBuffer(rt, nbytes),
                  device_id=gpu_index)
    try:
        prepared = prepare_engine(trt, cfg.model, cfg.scheduler.max_batch, gpu, force=force,
                                  verify_only=check_only, **common)
        if prepared.plan is None:
            lookup = prepared.first_lookup
            return fail(f"no valid engine for {cfg.model.path} on {gpu.name} ({lookup.status}: {lookup.reason}); "
                        f"run: pipeline build-engine {config_path}")
        if not _deserializes(trt, logger, prepared.plan):
            if check_only or prepared.built:
                return fail(f"engine {prepared.engine_path} does not deserialize: {logger.last_error or 'no reason'}")
            print(f"build-engine: cached engine {prepared.engine_path} does not deserialize; rebuilding", file=err)
            prepared = prepare_engine(trt, cfg.model, cfg.scheduler.max_batch, gpu, force=True, **common)
    except KeyboardInterrupt:
        progress.cancel.set()
        return fail("interrupted")
    except (EngineBuildError, CalibrationError, ValueError, OSError) as exc:
        return fail(str(exc))
    print(_summary(prepared, gpu.name, gpu.compute_capability), file=out)
    return 0


def _deserializes(trt: Any, logger: Any, plan: bytes) -> bool:
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan)
    ok = engine is not None
    del engine, runtime
    return ok


def _summary(prepared: PreparedEngine, gpu_name: str, capability: str) -> str:
    spec, meta = prepared.spec, prepared.metadata
    how = (f"built in {meta.get('build_seconds', 0):.1f} s" if prepared.built else "verified from cache")
    precision = meta.get("effective_precision", spec.precision)
    return (f"engine ready: {prepared.engine_path} ({how}; {precision}, {output_summary(spec)}, batch "
            f"{spec.min_batch}/{spec.opt_batch}/{spec.max_batch}, {spec.profiles} profile(s), TensorRT "
            f"{spec.tensorrt_version}, {gpu_name} sm {capability})")
