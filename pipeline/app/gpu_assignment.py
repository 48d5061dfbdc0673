"""Which GPU runs what (issue 21, the part a CPU box can check): a camera's device path, and the
spread of cameras over a box's GPUs by expected load, with pins and failover.

Pure functions of the config: no CUDA, no threads. The daemon runs one path today (the first GPU
of `gpus:`, `device_path`); per-GPU pipelines are not wired yet (docs/operations.md, Several GPUs).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from pipeline.config import CameraConfig, DecodeConfig, PipelineConfig

# Expected pixels per second of a camera whose size the config does not say (files, network
# streams): 1080p at 30 fps, the common CCTV main stream.
DEFAULT_LOAD = 1920 * 1080 * 30
_SYNTHETIC = re.compile(r"^synthetic:(\d+)x(\d+)@(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class DevicePath:
    """One GPU id through a camera's whole path: decode -> preprocess -> model."""

    gpu: int
    decode: DecodeConfig  # decode.gpu_id is `gpu` (sources and decode workers read it there)
    preprocess_device: str  # "cpu" | "gpu" (create_preprocessor's device; its device_id is `gpu`)
    model_device: str  # "cpu" | "gpu:N" (create_backend's device)


def device_path(cfg: PipelineConfig, gpu: int | None = None) -> DevicePath:
    """The devices of the stages of a camera on `gpu` (default: the config's first GPU). The model
    runs where the preprocessor leaves its tensor: on the GPU with preprocess.device gpu, else on
    the CPU, as before; what changed is that it is the same GPU as decode and preprocess."""
    gpu = cfg.primary_gpu if gpu is None else gpu
    decode = cfg.decode if cfg.decode.gpu_id == gpu else cfg.decode.model_copy(update={"gpu_id": gpu})
    model_device = f"gpu:{gpu}" if cfg.preprocess.device == "gpu" else "cpu"
    return DevicePath(gpu, decode, cfg.preprocess.device, model_device)


def single_gpu_notice(cfg: PipelineConfig) -> str | None:
    """What the daemon says at start when the config asks for more than the one GPU path it runs."""
    several = cfg.gpus == "all" or (isinstance(cfg.gpus, list) and len(cfg.gpus) > 1)
    pinned = sorted(c.id for c in cfg.cameras if c.gpu is not None and c.gpu != cfg.primary_gpu)
    if not several and not pinned:
        return None
    return (f"gpus: every camera runs on GPU {cfg.primary_gpu}: spreading cameras over several GPUs is "
            f"not wired yet (docs/operations.md, Several GPUs)"
            + (f"; pins ignored: {', '.join(pinned)}" if pinned else ""))


def expected_load(camera: CameraConfig) -> int:
    """Pixels per second the camera is expected to bring: width x height x fps where the config
    says (synthetic sources), DEFAULT_LOAD otherwise."""
    m = _SYNTHETIC.match(camera.url.strip())
    if m is None:
        return DEFAULT_LOAD
    return max(1, round(int(m.group(1)) * int(m.group(2)) * float(m.group(3))))


@dataclass(frozen=True)
class CameraLoad:
    camera_id: str
    load: int  # expected pixels per second
    pin: int | None = None  # camera.gpu


@dataclass(frozen=True)
class GpuAssignment:
    """Cameras per GPU. `stranded`: cameras with no GPU to run on (their GPU failed, failover off
    or no GPU left); they report down until a GPU takes them."""

    gpus: tuple[int, ...]
    cameras: Mapping[int, tuple[str, ...]]  # GPU id -> camera ids, in assignment order
    loads: Mapping[int, int]  # GPU id -> expected pixels per second
    stranded: tuple[str, ...] = ()
    _gpu_of: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    def gpu_of(self, camera_id: str) -> int | None:
        return self._gpu_of.get(camera_id)

    def lines(self) -> list[str]:
        """Human lines for `pipeline check`."""
        out = [f"gpu {g}: {len(self.cameras[g])} camera(s), {self.loads[g] / 1e6:.1f} Mpx/s: "
               f"{', '.join(self.cameras[g]) or '-'}" for g in self.gpus]
        if self.stranded:
            out.append(f"no GPU: {', '.join(self.stranded)}")
        return out


class AssignmentError(ValueError):
    """A pin names a GPU that is not in the list; one line naming the camera."""


def _build(gpus: Sequence[int], placed: Iterable[tuple[str, int]], stranded: Iterable[str],
           load_of: Mapping[str, int]) -> GpuAssignment:
    cameras: dict[int, list[str]] = {g: [] for g in gpus}
    loads = {g: 0 for g in gpus}
    gpu_of: dict[str, int] = {}
    for camera_id, gpu in placed:
        cameras[gpu].append(camera_id)
        loads[gpu] += load_of[camera_id]
        gpu_of[camera_id] = gpu
    return GpuAssignment(tuple(gpus), {g: tuple(c) for g, c in cameras.items()}, loads,
                         tuple(stranded), gpu_of)


def _spread(unpinned: Sequence[CameraLoad], gpus: Sequence[int], loads: dict[int, int]) -> list[tuple[str, int]]:
    """Greedy by decreasing load onto the least-loaded GPU (ties: the lower id): within 4/3 of the
    best spread, and the same input always gives the same answer."""
    placed = []
    for cam in sorted(unpinned, key=lambda c: (-c.load, c.camera_id)):
        gpu = min(gpus, key=lambda g: (loads[g], g))
        loads[gpu] += cam.load
        placed.append((cam.camera_id, gpu))
    return placed


def assign_cameras(cameras: Sequence[CameraLoad], gpus: Sequence[int]) -> GpuAssignment:
    """Pinned cameras on their GPU, the rest spread by expected load."""
    if not gpus:
        raise AssignmentError("no GPU to assign cameras to")
    if len(set(gpus)) != len(gpus):
        raise AssignmentError(f"GPU list {list(gpus)} names a GPU twice")
    loads = {g: 0 for g in gpus}
    placed: list[tuple[str, int]] = []
    for cam in cameras:
        if cam.pin is None:
            continue
        if cam.pin not in loads:
            raise AssignmentError(f"camera {cam.camera_id}: gpu {cam.pin} is not one of gpus {list(gpus)}")
        loads[cam.pin] += cam.load
        placed.append((cam.camera_id, cam.pin))
    placed += _spread([c for c in cameras if c.pin is None], gpus, loads)
    return _build(gpus, placed, (), {c.camera_id: c.load for c in cameras})


def fail_gpu(assignment: GpuAssignment, cameras: Sequence[CameraLoad], failed: int,
             failover: bool) -> GpuAssignment:
    """The assignment after GPU `failed` is lost. The other GPUs keep their cameras (their frames
    never move, so their streams have no gap); the failed GPU's cameras, pinned ones too, move to
    the remaining GPUs by load with failover, else they are stranded until the GPU is back."""
    if failed not in assignment.gpus:
        raise AssignmentError(f"gpu {failed} is not one of gpus {list(assignment.gpus)}")
    remaining = [g for g in assignment.gpus if g != failed]
    load_of = {c.camera_id: c.load for c in cameras}
    kept = [(cid, g) for g in remaining for cid in assignment.cameras[g]]
    moving = [c for c in cameras if c.camera_id in set(assignment.cameras[failed])]
    stranded = list(assignment.stranded)
    if failover and remaining:
        loads = {g: assignment.loads[g] for g in remaining}
        kept += _spread(moving, remaining, loads)
    else:
        stranded += [c.camera_id for c in moving]
    return _build(remaining, kept, stranded, load_of)


def camera_loads(cfg: PipelineConfig) -> list[CameraLoad]:
    return [CameraLoad(c.id, expected_load(c), c.gpu) for c in cfg.cameras]


def assignment_for(cfg: PipelineConfig, visible_gpus: int) -> GpuAssignment:
    """The config's cameras over its GPUs (`gpus: all`: the `visible_gpus` this machine shows)."""
    gpus = cfg.gpu_ids(visible_gpus)
    if not gpus:
        raise AssignmentError("all, but no GPU is visible on this machine")
    return assign_cameras(camera_loads(cfg), gpus)
