"""What `pipeline bench` measures, per stage, and how it is summarised and printed.

Every stage produces one StageResult with the same fields (those that do not apply are None), so the
JSON report always has every key and consumers never need to special-case a stage.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

REPORT_SCHEMA = "pipeline.bench/1"
# analytics_N: tracking + zones + lines alone at N detections per frame (pipeline/tools/bench/analytics.py);
# inference_under_decode: the model again while the N cameras decode in real time (asked for by name)
STAGES = ("decode", "preprocess", "inference", "postprocess", "inference_under_decode", "e2e_fast", "e2e_realtime",
          "analytics_10", "analytics_50")
# The stages that can each be the pipeline's ceiling when measured alone.
ALONE_STAGES = ("decode", "preprocess", "inference", "postprocess")


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values_ms: Sequence[float] | np.ndarray) -> "Percentiles | None":
        v = np.asarray(values_ms, dtype=np.float64)
        if v.size == 0:
            return None
        p50, p95, p99 = np.percentile(v, [50, 95, 99])
        return cls(round(float(p50), 3), round(float(p95), 3), round(float(p99), 3), round(float(v.max()), 3))


@dataclass(frozen=True)
class Spread:
    """min / mean / max over cameras (frames per second of each camera)."""

    min: float
    mean: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread | None":
        if not values:
            return None
        return cls(round(min(values), 3), round(sum(values) / len(values), 3), round(max(values), 3))


@dataclass(frozen=True)
class Drops:
    frames_dropped: int  # metrics pipeline_frames_dropped (scheduler overflow, shutdown, errors)
    by_reason: dict[str, int]
    messages_lost: int  # gaps in the subscriber's per-camera seq (ZeroMQ high-water mark)
    decode_errors: int
    frames_decoded: int
    drop_fraction: float  # (frames_dropped + messages_lost) / frames_decoded


@dataclass(frozen=True)
class Resources:
    cpu_percent: float  # CPU time of this process and its decode workers / wall time * 100 (200 = two cores busy)
    rss_peak_mib: float
    gpu_mem_peak_mib: float | None  # None: no NVIDIA GPU (or no way to read its memory)
    processes: int = 1  # this process and its decode workers, the most seen at once (older reports: absent)
    # this process's garbage collections in the window (every thread holds still during one);
    # None in reports older than issue 22's session 4
    gc_collections: int | None = None
    gc_pause_ms: float | None = None
    gc_pause_max_ms: float | None = None


@dataclass(frozen=True)
class StageResult:
    stage: str
    streams: int | None  # cameras running (decode, end to end)
    batch_size: int | None  # frames per call (preprocess, inference, postprocess)
    seconds: float  # length of the measured window
    frames: int  # frames through the stage in the window
    fps: float  # frames / seconds: the stage's throughput
    per_camera_fps: Spread | None
    call_ms: Percentiles | None  # time per batch (preprocess, inference, postprocess)
    latency_ms: Percentiles | None  # capture -> publish, from the received messages (end to end)
    target_fps: float | None  # real-time run: what the cameras produce at their native rate
    drops: Drops | None
    held: bool | None  # real-time run: did the pipeline keep up
    held_reason: str | None
    resources: Resources | None
    error: str | None = None
    # GPU time per frame as the stage itself measured it (the fused letterbox: CUDA events around
    # its kernel); None where the stage does not measure it
    gpu_us_per_frame: float | None = None
    detections_per_frame: float | None = None  # end to end: mean detections in the messages received

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def failed(stage: str, error: str, streams: int | None = None, batch_size: int | None = None) -> StageResult:
    return StageResult(stage, streams, batch_size, 0.0, 0, 0.0, None, None, None, None, None,
                       None, None, None, error)


def stage_us_per_frame(stages: dict[str, StageResult]) -> dict[str, dict[str, Any]]:
    """Per batch stage: microseconds per frame, as measured by the stage's own CUDA events where it
    has them, else 1e6 / its frames per second alone (an upper bound on its GPU time: the stage
    alone keeps the GPU at most fully busy)."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("preprocess", "inference"):
        r = stages.get(name)
        if r is None or r.error is not None or r.fps <= 0:
            continue
        if r.gpu_us_per_frame is not None:
            out[name] = {"us": round(r.gpu_us_per_frame, 3), "from": "cuda events"}
        else:
            out[name] = {"us": round(1e6 / r.fps, 3), "from": "1/fps alone"}
    return out


def summarise(stages: dict[str, StageResult], native_fps: float | None, shared_gpu: bool = False) -> dict[str, Any]:
    """The ceilings and the ratio that names the bottleneck.

    ceiling: min(decode, inference) measured alone (the issue's yardstick); e2e_ratio: end to end
    (as fast as possible) over that ceiling; bottleneck: the slowest stage measured alone;
    serial_fps: the throughput if no two stages overlapped (1 / sum(1 / fps)): on a CPU-only box the
    stages share the cores, so end to end lands between serial_fps and the slowest stage.
    """
    alone = {name: stages[name].fps for name in ALONE_STAGES
             if name in stages and stages[name].error is None and stages[name].fps > 0}
    ceiling_stage = min((n for n in ("decode", "inference") if n in alone), key=alone.get, default=None)
    ceiling = alone.get(ceiling_stage) if ceiling_stage else None
    fast = stages.get("e2e_fast")
    e2e = fast.fps if fast is not None and fast.error is None else None
    bottleneck = min(alone, key=alone.get) if alone else None
    realtime = stages.get("e2e_realtime")
    per_frame = stage_us_per_frame(stages)
    shared = None
    if shared_gpu and {"preprocess", "inference"} <= set(per_frame):
        # preprocess and inference run kernels on the same SMs: together they cannot exceed
        # 1 / (sum of their GPU time per frame); NVDEC is separate hardware
        sm_fps = 1e6 / (per_frame["preprocess"]["us"] + per_frame["inference"]["us"])
        shared = min(sm_fps, alone["decode"]) if "decode" in alone else sm_fps
    return {
        "stage_us_per_frame": per_frame,
        "shared_gpu_ceiling_fps": _round(shared),
        "e2e_ratio_shared_gpu": _round(e2e / shared if e2e is not None and shared else None, 4),
        "ceiling_fps": _round(ceiling),
        "ceiling_stage": ceiling_stage,
        "e2e_fps": _round(e2e),
        "e2e_ratio": _round(e2e / ceiling if e2e is not None and ceiling else None, 4),
        "bottleneck": bottleneck,
        "bottleneck_fps": _round(alone.get(bottleneck) if bottleneck else None),
        "serial_fps": _round(1.0 / sum(1.0 / v for v in alone.values()) if alone else None),
        "native_fps_per_stream": _round(native_fps),
        "realtime_streams_at_ceiling": _round(ceiling / native_fps if ceiling and native_fps else None, 2),
        "realtime_streams_e2e": _round(e2e / native_fps if e2e and native_fps else None, 2),
        "realtime_held": None if realtime is None or realtime.error else realtime.held,
        "inference_under_decode": _under_decode(stages.get("inference_under_decode"), alone.get("inference")),
    }


def _under_decode(r: StageResult | None, alone_fps: float | None) -> dict[str, Any] | None:
    """The model's frames/s while the cameras decode, against the model alone and what the cameras send."""
    if r is None or r.error is not None:
        return None
    return {"streams": r.streams, "fps": _round(r.fps), "target_fps": _round(r.target_fps),
            "of_alone": _round(r.fps / alone_fps if alone_fps else None, 4)}


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(float(v), digits)


# ---------------------------------------------------------------------------------------------- table

def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _row(r: StageResult) -> list[str]:
    if r.error:
        return [r.stage, _fmt(r.streams, "d"), _fmt(r.batch_size, "d"), f"FAILED: {r.error}"]
    cam = f"{r.per_camera_fps.min:.1f}/{r.per_camera_fps.mean:.1f}" if r.per_camera_fps else "-"
    pct = r.latency_ms or r.call_ms
    lat = f"{pct.p50:.0f}/{pct.p95:.0f}/{pct.p99:.0f}" + ("" if r.latency_ms else " (call)") if pct else "-"
    drops = "-"
    if r.drops:
        drops = f"{r.drops.frames_dropped + r.drops.messages_lost} ({100 * r.drops.drop_fraction:.1f}%)"
    res = r.resources
    held = "-" if r.held is None else ("held" if r.held else f"NOT held: {r.held_reason}")
    return [r.stage, _fmt(r.streams, "d"), _fmt(r.batch_size, "d"), _fmt(r.fps), cam, lat, drops,
            _cpu(res), _fmt(res.rss_peak_mib, ".0f") if res else "-",
            _fmt(res.gpu_mem_peak_mib, ".0f") if res else "-",
            f"{_fmt(r.target_fps)} {held}" if r.target_fps is not None or r.held is not None else "-"]


def _cpu(res: Resources | None) -> str:
    if res is None:
        return "-"
    return _fmt(res.cpu_percent, ".0f") + (f" ({res.processes} procs)" if res.processes > 1 else "")


HEADER = ["stage", "streams", "batch", "frames/s", "cam fps min/mean", "p50/p95/p99 ms", "drops", "CPU%",
          "RSS MiB", "GPU MiB", "real-time target"]


def format_table(stages: dict[str, StageResult], summary: dict[str, Any]) -> str:
    rows = [HEADER] + [_row(stages[name]) for name in STAGES if name in stages]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(HEADER))]
    lines = []
    for row in rows:
        cells = [c.rjust(widths[i]) if i else c.ljust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    lines.extend(e2e_lines(stages))
    lines.append("")
    lines.append(summary_line(summary))
    return "\n".join(lines)


def e2e_lines(stages: dict[str, StageResult]) -> list[str]:
    """The end-to-end runs' garbage-collector pauses (the daemon's process stops while one runs) and
    the detections a frame their messages carried."""
    out = []
    for name in ("e2e_fast", "e2e_realtime"):
        r = stages.get(name)
        if r is None:
            continue
        res = r.resources
        if res is not None and res.gc_collections is not None and r.seconds:
            out.append(f"{name}: garbage collector ran {res.gc_collections} times, {res.gc_pause_ms:.0f} ms in all "
                       f"({res.gc_pause_ms / 10 / r.seconds:.1f}% of the window), longest {res.gc_pause_max_ms:.1f} ms")
        if r.detections_per_frame is not None:
            out.append(f"{name}: {r.detections_per_frame:.1f} detections a frame published")
    return out


def summary_line(s: dict[str, Any]) -> str:
    if s["ceiling_fps"] is None:
        return "no ceiling: decode and inference both failed or were skipped"
    out = (f"ceiling min(decode, inference) = {s['ceiling_fps']:.1f} frames/s ({s['ceiling_stage']}); "
           f"slowest stage alone: {s['bottleneck']} ({s['bottleneck_fps']:.1f} frames/s)")
    if s["e2e_ratio"] is not None:
        out += (f"\nend to end / ceiling = {s['e2e_fps']:.1f} / {s['ceiling_fps']:.1f} = {s['e2e_ratio']:.2f}"
                f" (all stages serialised: {s['serial_fps']:.1f} frames/s)")
    if s.get("shared_gpu_ceiling_fps") is not None:
        parts = ", ".join(f"{k} {v['us']:.1f} us ({v['from']})" for k, v in s["stage_us_per_frame"].items())
        out += (f"\nshared-GPU ceiling min(decode, 1 / sum of GPU time per frame) = {s['shared_gpu_ceiling_fps']:.1f}"
                f" frames/s; per frame: {parts}")
        if s.get("e2e_ratio_shared_gpu") is not None:
            out += f"; end to end / shared-GPU ceiling = {s['e2e_ratio_shared_gpu']:.2f}"
    loaded = s.get("inference_under_decode")
    if loaded is not None:
        out += f"\ninference while {loaded['streams']} cameras decode in real time: {loaded['fps']:.1f} frames/s"
        if loaded["of_alone"] is not None:
            out += f" ({loaded['of_alone']:.2f} of the model alone)"
        if loaded["target_fps"] is not None:
            out += f"; the cameras send {loaded['target_fps']:.1f}"
    if s["realtime_streams_at_ceiling"] is not None:
        out += (f"\nat {s['native_fps_per_stream']:g} fps per camera: ceiling = "
                f"{s['realtime_streams_at_ceiling']:.1f} real-time streams, end to end = "
                f"{_fmt(s['realtime_streams_e2e'])}")
    return out


def stage_from_json(d: dict[str, Any]) -> StageResult:
    """Inverse of StageResult.to_json (to print a saved report)."""
    def sub(cls: type, key: str) -> Any:
        return None if d.get(key) is None else cls(**d[key])

    plain = {k: v for k, v in d.items() if k not in ("per_camera_fps", "call_ms", "latency_ms", "drops", "resources")}
    return StageResult(**plain, per_camera_fps=sub(Spread, "per_camera_fps"), call_ms=sub(Percentiles, "call_ms"),
                       latency_ms=sub(Percentiles, "latency_ms"), drops=sub(Drops, "drops"),
                       resources=sub(Resources, "resources"))
