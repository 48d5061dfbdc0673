"""Engine cache for backend tensorrt: what an engine depends on (EngineSpec), where it lives,
and how it is written and checked. Pure Python: nothing here imports TensorRT.

An engine is only valid for the exact ONNX file, TensorRT version, GPU model and build settings
it was built with, so every one of those goes into the cache key. Each engine has a JSON sidecar
(written last, so it is the commit marker) recording the key, the spec and the engine's sha256.
A lookup loads an engine only when all of those agree; anything else (missing, unreadable,
truncated, for another spec, built with another calibration cache) is reported and rebuilt.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

log = logging.getLogger(__name__)

METADATA_FORMAT = 1
KEY_PREFIX_CHARS = 16  # of the sha256 hex in file names; the full key is in the sidecar


@dataclass(frozen=True)
class GpuIdentity:
    """The GPU an engine is built for. TensorRT engines do not move between GPU models."""

    name: str
    compute_capability: str  # "major.minor", e.g. "9.0"

    @property
    def capability(self) -> tuple[int, int]:
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", self.name).strip("-").lower() or "gpu"


@dataclass(frozen=True)
class ProfileShapes:
    """The optimization profile of the image input: batch min/opt/max, fixed C, H, W."""

    min_batch: int
    opt_batch: int
    max_batch: int
    channels: int = 3
    height: int = 640
    width: int = 640

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"optimization profile needs 1 <= min <= opt <= max batch, got "
                             f"{self.min_batch}/{self.opt_batch}/{self.max_batch}")

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.channels, self.height, self.width)

    @property
    def min(self) -> tuple[int, int, int, int]:
        return self.shape(self.min_batch)

    @property
    def opt(self) -> tuple[int, int, int, int]:
        return self.shape(self.opt_batch)

    @property
    def max(self) -> tuple[int, int, int, int]:
        return self.shape(self.max_batch)


def batch_profile(max_batch: int, input_size: int, opt_batch: int | None = None,
                  fixed_batch: int | None = None) -> ProfileShapes:
    """min 1, opt `opt_batch` (default max_batch // 2, at least 1), max `max_batch`.

    A model exported with a fixed batch dimension gets min = opt = max = that batch.
    """
    if max_batch < 1:
        raise ValueError(f"scheduler.max_batch must be >= 1, got {max_batch}")
    if fixed_batch is not None:
        return ProfileShapes(fixed_batch, fixed_batch, fixed_batch, 3, input_size, input_size)
    opt = max(1, max_batch // 2) if opt_batch is None else opt_batch
    if not 1 <= opt <= max_batch:
        raise ValueError(f"model.tensorrt.opt_batch {opt} must be between 1 and scheduler.max_batch "
                         f"({max_batch})")
    return ProfileShapes(1, opt, max_batch, 3, input_size, input_size)


@dataclass(frozen=True)
class EngineSpec:
    """Everything the built engine depends on. Change any field and the key changes."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str  # as requested in the config; the effective one is in the metadata
    input_size: int
    min_batch: int
    opt_batch: int
    max_batch: int
    profiles: int  # one optimization profile per execution context
    workspace_mib: int
    builder_optimization_level: int
    calibration: str = ""  # fingerprint of the calibration settings (int8 only)
    # model.max_candidates (0: the model's own [B, 4+C, N] output) and the sha256 of the candidates
    # model built instead of the ONNX file (trt_candidates.py): K and the appended graph are both keyed
    max_candidates: int = 0
    candidates_sha256: str = ""

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def calibration_fingerprint(sources: list[str], frames: int, batch_size: int) -> str:
    """Identifies the calibration inputs; the cache file's contents are checked separately."""
    text = json.dumps({"sources": sources, "frames": frames, "batch_size": batch_size}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_PREFIX_CHARS]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def default_engine_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """$STATE_DIRECTORY/engines under systemd (StateDirectory=), else ~/.cache/pipeline/engines."""
    env = os.environ if env is None else env
    state = env.get("STATE_DIRECTORY", "")
    if state:
        return Path(state.split(":")[0]) / "engines"  # systemd lists several dirs separated by ':'
    cache_home = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(cache_home) / "pipeline" / "engines"


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, rename over `path`.

    A reader sees the old file or the new one, never a half-written one, even if the process dies.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


LookupStatus = Literal["hit", "miss", "stale", "corrupt"]


@dataclass(frozen=True)
class CacheLookup:
    status: LookupStatus
    reason: str
    engine_path: Path
    plan: bytes | None = None  # only for "hit"
    metadata: dict[str, Any] | None = None


class EngineCache:
    """One folder of engines (`<model>.<key>.engine` + `.json`), calibration caches and timing caches."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    # ------------------------------------------------------------------ paths

    def engine_path(self, model_stem: str, spec: EngineSpec) -> Path:
        return self.directory / f"{model_stem}.{spec.key()[:KEY_PREFIX_CHARS]}.engine"

    def metadata_path(self, model_stem: str, spec: EngineSpec) -> Path:
        return self.engine_path(model_stem, spec).with_suffix(".json")

    def lock_path(self, model_stem: str, spec: EngineSpec) -> Path:
        return self.engine_path(model_stem, spec).with_suffix(".lock")

    def timing_cache_path(self, spec: EngineSpec) -> Path:
        # Timing caches hold kernel timings: valid for one GPU model and TensorRT version, any network.
        gpu = GpuIdentity(spec.gpu_name, spec.compute_capability)
        return self.directory / f"timing.{gpu.slug}.sm{spec.compute_capability}.trt{spec.tensorrt_version}.cache"

    def candidates_model_path(self, model_stem: str, onnx_sha256: str, max_candidates: int) -> Path:
        """The ONNX model with candidate selection appended (trt_candidates.py), by source and K."""
        return self.directory / f"{model_stem}.{onnx_sha256[:KEY_PREFIX_CHARS]}.k{max_candidates}.candidates.onnx"

    def calibration_cache_path(self, model_stem: str, spec: EngineSpec) -> Path:
        return self.directory / f"{model_stem}.{spec.onnx_sha256[:KEY_PREFIX_CHARS]}.{spec.calibration}.calib"

    # ------------------------------------------------------------------ engines

    def lookup(self, model_stem: str, spec: EngineSpec, calibration_cache: Path | None = None) -> CacheLookup:
        """The cached engine for `spec` if (and only if) it is complete and matches exactly."""
        engine = self.engine_path(model_stem, spec)
        meta_path = self.metadata_path(model_stem, spec)
        if not meta_path.exists():
            if engine.exists():
                return CacheLookup("corrupt", "engine file without metadata (interrupted write?)", engine)
            differing = self._differences_from_siblings(model_stem, spec)
            if differing:  # e.g. TensorRT was upgraded: the old engine must not be used
                return CacheLookup("stale", f"cached engine(s) for {model_stem} were built with other "
                                            f"{', '.join(differing)}", engine)
            return CacheLookup("miss", "no cached engine", engine)
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            return CacheLookup("corrupt", f"metadata unreadable ({exc})", engine)
        if meta.get("format") != METADATA_FORMAT or meta.get("key") != spec.key() or meta.get("spec") != spec.as_dict():
            return CacheLookup("stale", "metadata is for another spec", engine, metadata=meta)
        try:
            plan = engine.read_bytes()
        except OSError as exc:
            return CacheLookup("corrupt", f"engine unreadable ({exc.strerror or exc})", engine, metadata=meta)
        if len(plan) != meta.get("engine_bytes") or hashlib.sha256(plan).hexdigest() != meta.get("engine_sha256"):
            return CacheLookup("corrupt", "engine file does not match its recorded sha256", engine, metadata=meta)
        recorded_calib = meta.get("calibration_cache_sha256")
        if calibration_cache is not None and recorded_calib and calibration_cache.exists() \
                and file_sha256(calibration_cache) != recorded_calib:
            return CacheLookup("stale", f"calibration cache {calibration_cache} changed since the build",
                               engine, metadata=meta)
        return CacheLookup("hit", "cached engine matches", engine, plan, meta)

    def _differences_from_siblings(self, model_stem: str, spec: EngineSpec) -> list[str]:
        """Spec fields in which other engines of this model differ from `spec` (sorted)."""
        fields: set[str] = set()
        want = spec.as_dict()
        for meta_path in self.directory.glob(f"{glob_escape(model_stem)}.*.json"):
            try:
                other = json.loads(meta_path.read_text()).get("spec")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(other, dict):
                fields.update(k for k in want if other.get(k) != want[k])
        return sorted(fields)

    def store(self, model_stem: str, spec: EngineSpec, plan: bytes, **details: Any) -> Path:
        """Write the engine, then its metadata (the commit marker); both atomically."""
        engine = self.engine_path(model_stem, spec)
        atomic_write_bytes(engine, plan)
        meta = {"format": METADATA_FORMAT, "key": spec.key(), "spec": spec.as_dict(),
                "engine_sha256": hashlib.sha256(plan).hexdigest(), "engine_bytes": len(plan),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **details}
        atomic_write_bytes(self.metadata_path(model_stem, spec), (json.dumps(meta, indent=2) + "\n").encode())
        return engine

    def invalidate(self, model_stem: str, spec: EngineSpec) -> None:
        """Drop an entry that failed to load, so the next start rebuilds it."""
        for path in (self.metadata_path(model_stem, spec), self.engine_path(model_stem, spec)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @contextlib.contextmanager
    def build_lock(self, model_stem: str, spec: EngineSpec) -> Iterator[None]:
        """Exclusive lock so a daemon start and `pipeline build-engine` never build the same engine twice."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path(model_stem, spec), "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ timing cache

    def read_timing_cache(self, spec: EngineSpec) -> bytes | None:
        try:
            return self.timing_cache_path(spec).read_bytes() or None
        except OSError:
            return None

    def write_timing_cache(self, spec: EngineSpec, data: bytes) -> None:
        atomic_write_bytes(self.timing_cache_path(spec), data)
