"""Engine provisioning for backend tensorrt: look the engine up in the cache, build it on a miss
(or when the cached one is stale or corrupt), store it with its timing cache. Shared by the
backend's first start and `pipeline build-engine`, so both key and build the same engine, with
the same model.max_candidates (the candidates model comes from trt_candidates.py).
"""
from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.config import CalibrationConfig, ModelConfig
from pipeline.frame import OutputLayout
from pipeline.infer.tensorrt.build import BuildRequest, BuiltEngine, CandidateNetwork, build_engine
from pipeline.infer.tensorrt.calibrator import (CalibrationBatches, CalibrationCacheFile, CalibratorFeed,
                                           DeviceUpload, calibration_frames)
from pipeline.infer.tensorrt.candidates import candidate_network
from pipeline.infer.tensorrt.engine_cache import (CacheLookup, EngineCache, EngineSpec, GpuIdentity, ProfileShapes,
                                             batch_profile, calibration_fingerprint, default_engine_cache_dir,
                                             file_sha256)
from pipeline.infer.tensorrt.progress import PhaseLines, python_logger

log = logging.getLogger(__name__)


def build_request(model: ModelConfig, max_batch: int, contexts: int | None = None,
                  candidates: CandidateNetwork | None = None) -> BuildRequest:
    trt_cfg = model.tensorrt
    calib = model.calibration or CalibrationConfig()
    return BuildRequest(onnx_path=Path(model.path), input_size=model.input_size, num_classes=len(model.labels),
                        max_batch=max_batch, opt_batch=trt_cfg.opt_batch, precision=model.precision,
                        contexts=contexts or trt_cfg.contexts, workspace_mib=trt_cfg.workspace_mib,
                        builder_optimization_level=trt_cfg.builder_optimization_level,
                        calibration_batch=calib.batch_size, candidates=candidates)


def engine_spec(request: BuildRequest, gpu: GpuIdentity, tensorrt_version: str, onnx_sha256: str,
                calibration: CalibrationConfig | None) -> EngineSpec:
    # the profile the config asks for; a fixed-batch model narrows it at build time, deterministically
    profile = batch_profile(request.max_batch, request.input_size, request.opt_batch)
    fingerprint = ""
    if request.precision == "int8":
        calib = calibration or CalibrationConfig()
        fingerprint = calibration_fingerprint(list(calib.sources), calib.frames, calib.batch_size)
    return EngineSpec(onnx_sha256=onnx_sha256, tensorrt_version=tensorrt_version, gpu_name=gpu.name,
                      compute_capability=gpu.compute_capability, precision=request.precision,
                      input_size=request.input_size, min_batch=profile.min_batch, opt_batch=profile.opt_batch,
                      max_batch=profile.max_batch, profiles=request.contexts, workspace_mib=request.workspace_mib,
                      builder_optimization_level=request.builder_optimization_level, calibration=fingerprint,
                      max_candidates=request.candidates.max_candidates if request.candidates else 0,
                      candidates_sha256=request.candidates.sha256 if request.candidates else "")


def trtexec_command(request: BuildRequest, profile: ProfileShapes, input_name: str, precision: str,
                    engine_path: Path, timing_cache: Path, calibration_cache: Path | None,
                    device_id: int = 0) -> str:
    """The trtexec line building the same engine (with one profile: trtexec builds one)."""
    def dims(shape: tuple[int, ...]) -> str:
        return f"{input_name}:" + "x".join(str(d) for d in shape)

    args = ["trtexec", f"--onnx={os.path.normpath(request.network_path)}", f"--saveEngine={engine_path}",
            f"--minShapes={dims(profile.min)}", f"--optShapes={dims(profile.opt)}",
            f"--maxShapes={dims(profile.max)}", f"--memPoolSize=workspace:{request.workspace_mib}M",
            f"--builderOptimizationLevel={request.builder_optimization_level}",
            f"--timingCacheFile={timing_cache}", f"--device={device_id}", "--skipInference"]
    if precision in ("fp16", "int8"):
        args.append("--fp16")
    if precision == "fp16":
        args.append("--inputIOFormats=fp16:chw")  # the fp16 engine takes float16 input (trt_build)
    if precision == "int8":
        args.append("--int8")
        if calibration_cache is not None:
            args.append(f"--calib={calibration_cache}")
    return " ".join(shlex.quote(a) for a in args)


@dataclass(frozen=True)
class PreparedEngine:
    plan: bytes | None  # None only from a verify-only call that found no valid engine
    engine_path: Path
    spec: EngineSpec
    built: bool  # True: built by this call; False: loaded from the cache
    first_lookup: CacheLookup  # what the cache said before any build
    metadata: dict[str, Any]

    @property
    def layout(self) -> OutputLayout:
        """What the engine's first output holds: [B, 6, K] candidates when built with them."""
        return OutputLayout.CANDIDATES if self.spec.max_candidates else OutputLayout.ANCHORS


@dataclass(frozen=True)
class EngineTarget:
    """The engine prepare_engine looks up (spec, in cache) and would build (request)."""

    request: BuildRequest
    spec: EngineSpec
    cache: EngineCache


def engine_target(trt_version: str, model: ModelConfig, max_batch: int, gpu: GpuIdentity, *,
                  cache_dir: Path | None = None, contexts: int | None = None, write: bool = True) -> EngineTarget:
    """Request, key and cache for `model`: with model.max_candidates set (and a model the graph fits),
    the candidates model is written to the cache folder (unless write=False) and is what gets built."""
    onnx_path = Path(model.path)
    try:
        onnx_sha = file_sha256(onnx_path)
    except OSError as exc:
        raise ValueError(f"{onnx_path}: cannot read model: {exc.strerror or exc}") from None
    cache = EngineCache(Path(model.engine_cache_dir) if model.engine_cache_dir else
                        (cache_dir or default_engine_cache_dir()))
    candidates = candidate_network(onnx_path, onnx_sha, model.max_candidates, len(model.labels), cache, write=write)
    request = build_request(model, max_batch, contexts, candidates)
    return EngineTarget(request, engine_spec(request, gpu, trt_version, onnx_sha, model.calibration), cache)


def calibration_cache_path(model: ModelConfig, cache: EngineCache, spec: EngineSpec) -> Path | None:
    if model.precision != "int8":
        return None
    if model.calibration is not None and model.calibration.cache_file is not None:
        return Path(model.calibration.cache_file)
    return cache.calibration_cache_path(Path(model.path).stem, spec)


def prepare_engine(trt: Any, model: ModelConfig, max_batch: int, gpu: GpuIdentity, *,
                   cache_dir: Path | None = None, contexts: int | None = None, force: bool = False,
                   verify_only: bool = False, progress: PhaseLines | None = None, logger: Any = None,
                   configure: Callable[[Any], None] | None = None,
                   device_upload: Callable[[int], DeviceUpload] | None = None, device_id: int = 0) -> PreparedEngine:
    """The serialized engine for `model` on `gpu`, from the cache or freshly built.

    device_upload(nbytes): device memory for INT8 calibration batches (trt_cuda.DeviceBuffer).
    """
    onnx_path = Path(model.path)
    target = engine_target(str(getattr(trt, "__version__", "unknown")), model, max_batch, gpu, cache_dir=cache_dir,
                           contexts=contexts, write=not verify_only)
    request, spec, cache = target.request, target.spec, target.cache
    stem = onnx_path.stem
    calib_path = calibration_cache_path(model, cache, spec)

    first = cache.lookup(stem, spec, calib_path)
    if first.status == "hit" and not force:
        log.info("%s: engine from cache %s", onnx_path, first.engine_path)
        return PreparedEngine(first.plan, first.engine_path, spec, False, first, first.metadata or {})
    if verify_only:
        return PreparedEngine(None, first.engine_path, spec, False, first, first.metadata or {})
    if first.status in ("stale", "corrupt"):
        log.warning("%s: cached engine %s is %s (%s); rebuilding", onnx_path, first.engine_path, first.status,
                    first.reason)

    with cache.build_lock(stem, spec):
        if not force:  # another process may have built it while we waited for the lock
            again = cache.lookup(stem, spec, calib_path)
            if again.status == "hit":
                return PreparedEngine(again.plan, again.engine_path, spec, False, first, again.metadata or {})
        log.info("%s: building TensorRT engine (%s, batch %d/%d/%d, %d profile(s), %s) for %s; this can take "
                 "minutes", onnx_path, model.precision, spec.min_batch, spec.opt_batch, spec.max_batch, spec.profiles,
                 output_summary(spec), gpu.name)
        feed_factory = _calibration_feed_factory(model, calib_path, device_upload) if model.precision == "int8" else None
        built = build_engine(trt, request, gpu, logger=logger or python_logger(trt),
                             timing_cache=cache.read_timing_cache(spec), progress=progress,
                             calibrator_feed=feed_factory, configure=configure)
        timing_path = cache.timing_cache_path(spec)
        if built.timing_cache:
            cache.write_timing_cache(spec, built.timing_cache)
        details = _metadata(built, request, cache.engine_path(stem, spec), timing_path, calib_path, device_id)
        engine_path = cache.store(stem, spec, built.plan, **details)
    log.info("%s: built engine %s (%s) in %.1f s", onnx_path, engine_path, built.precision, built.seconds)
    return PreparedEngine(built.plan, engine_path, spec, True, first, details)


def output_summary(spec: EngineSpec) -> str:
    return f"top {spec.max_candidates} candidates" if spec.max_candidates else "full output"


def _metadata(built: BuiltEngine, request: BuildRequest, engine_path: Path, timing_path: Path,
              calib_path: Path | None, device_id: int) -> dict[str, Any]:
    calib_sha = file_sha256(calib_path) if calib_path is not None and calib_path.exists() else None
    return {"effective_precision": built.precision, "input_name": built.input_name,
            "profile": {"min": list(built.profile.min), "opt": list(built.profile.opt), "max": list(built.profile.max)},
            "build_seconds": round(built.seconds, 3), "warnings": list(built.warnings),
            "calibration_batches": built.calibration_batches, "calibration_cache_sha256": calib_sha,
            "candidates_onnx": str(request.candidates.path) if request.candidates else None,
            "output": {"name": built.output_name, "shape": list(built.output_shape)},
            "trtexec": trtexec_command(request, built.profile, built.input_name, built.precision, engine_path,
                                       timing_path, calib_path, device_id)}


def _calibration_feed_factory(model: ModelConfig, calib_path: Path | None,
                              device_upload: Callable[[int], DeviceUpload] | None
                              ) -> Callable[[ProfileShapes, np.dtype], CalibratorFeed]:
    calib = model.calibration or CalibrationConfig()
    assert calib_path is not None
    cache_file = CalibrationCacheFile(calib_path)
    if not calib.sources and cache_file.read() is None:
        raise ValueError(f"model.precision int8 needs model.calibration.sources (videos or camera ids) or an "
                         f"existing calibration cache at {calib_path}")

    def make(profile: ProfileShapes, dtype: np.dtype) -> CalibratorFeed:
        frames = calibration_frames(list(calib.sources), calib.frames, model.input_size) if calib.sources else iter(())
        batches = CalibrationBatches(frames, calib.batch_size, dtype)
        nbytes = calib.batch_size * int(np.prod(profile.shape(1)[1:])) * np.dtype(dtype).itemsize
        device = device_upload(nbytes) if device_upload is not None else None
        return CalibratorFeed(batches, calib.batch_size, cache_file, device)

    return make
