"""`pipeline bench`: the ceilings of decode, preprocess and inference and the end-to-end throughput,
measured in one run on one machine, so the bottleneck is named, not guessed.

Stages, in this order, each with the config's own classes and settings:
  decode        N cameras (the config's cameras cycled to N, files looped) decoding as the daemon
                decodes (threads, or decode.workers processes), as fast as possible
  preprocess    the configured letterbox at scheduler.max_batch, on decoded frames held in memory
  inference     the configured backend at scheduler.max_batch, on one preprocessed batch
                (model.instances > 1: that many copies, each on its own thread, as the daemon runs them)
  postprocess   YOLO decode + NMS on that batch's output
  e2e_fast      the real Daemon with N streams as fast as possible, publishing to a real subscriber
  e2e_realtime  the same with the streams paced at their native frame rate

`--find-max` first searches the largest N whose real-time run holds (doubling, then bisecting), then
runs every stage at that N. Near the limit a short trial can hold where a second run does not, so when the
full run's e2e_realtime does not hold at N, N-1, N-2, ... are run again (up to --confirm-steps) and the
first that holds is reported as the confirmed count. Modules: bench_streams (the N streams), bench_stages (stages alone),
bench_e2e (the daemon runs), bench_probe (CPU/RSS/GPU memory), bench_report (results and table).
"""
from __future__ import annotations

import json
import logging
import os
import platform
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.tools.bench.cli import CLI_STAGES, KNOWN_STAGES
from pipeline.tools.bench.e2e import HoldCriteria, run_daemon
from pipeline.tools.bench.probe import GpuMemoryReader
from pipeline.tools.bench.report import REPORT_SCHEMA, STAGES, StageResult, failed, format_table, summarise
from pipeline.tools.bench.stages import (Window, measure_decode, measure_inference, measure_inference_under_decode,
                                   measure_postprocess, measure_preprocess)
from pipeline.tools.bench.streams import bench_cameras, media_names, native_fps
from pipeline.config import CameraConfig, PipelineConfig

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    streams: int
    seconds: float = 10.0
    warmup_s: float = 2.0
    media: Path | None = None  # one file for every stream instead of the config's cameras
    stages: tuple[str, ...] = CLI_STAGES
    criteria: HoldCriteria = field(default_factory=HoldCriteria)
    find_max: bool = False
    max_streams: int = 1024
    confirm_steps: int = 3  # --find-max: counts below N tried when the full run at N does not hold
    analytics_cameras: int = 100
    analytics_shards: int = 1
    detections_per_frame: int = 0  # synthetic detections added to every frame end to end (added_detections.py)

    def __post_init__(self) -> None:
        if not 0 <= self.detections_per_frame <= 1000:
            raise ValueError(f"--detections-per-frame {self.detections_per_frame}: must be 0..1000")
        if not (1 <= self.analytics_cameras <= 100_000 and 1 <= self.analytics_shards <= 256):
            raise ValueError("--analytics-cameras must be 1..100000 and --analytics-shards 1..256")
        if self.streams < 1:
            raise ValueError(f"--streams {self.streams}: need at least 1 stream")
        if not 0 <= self.confirm_steps <= 64:
            raise ValueError(f"--confirm-steps {self.confirm_steps}: must be 0..64")
        if self.seconds <= 0 or self.warmup_s < 0:
            raise ValueError("--seconds must be > 0 and --warmup >= 0")
        unknown = set(self.stages) - set(KNOWN_STAGES)
        if unknown:
            raise ValueError(f"--stages: unknown {', '.join(sorted(unknown))} (known: {', '.join(KNOWN_STAGES)})")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def stream_target_fps(cameras: list[CameraConfig]) -> tuple[float | None, float | None]:
    """(frames/s all streams produce in real time, mean per stream); None when a stream's rate is unknown."""
    per_url: dict[str, float | None] = {}
    rates = []
    for cam in cameras:
        if cam.url not in per_url:
            per_url[cam.url] = native_fps(cam)
        rates.append(per_url[cam.url])
    if not rates or any(r is None for r in rates):
        return None, None
    total = float(sum(rates))  # type: ignore[arg-type]
    return total, total / len(rates)


class BenchRun:
    """One benchmark: the options, the machine's GPU reader, progress output."""

    def __init__(self, cfg: PipelineConfig, options: BenchOptions, progress: Progress) -> None:
        self.cfg = cfg
        self.options = options
        self.progress = progress
        self.gpu = GpuMemoryReader(cfg.primary_gpu)
        self.window = Window(options.warmup_s, options.seconds)

    # ------------------------------------------------------------------ the stages

    def stages(self, streams: int) -> dict[str, StageResult]:
        cfg, opts = self.cfg, self.options
        batch = cfg.scheduler.max_batch
        fast = bench_cameras(cfg, streams, realtime=False, media=opts.media)
        out: dict[str, StageResult] = {}
        frames: list = []
        if "decode" in opts.stages:
            self.progress(f"decode: {streams} stream(s) for {self.window.seconds:g} s ...")
            try:
                out["decode"], frames = measure_decode(fast, cfg, self.window, keep=2 * batch, gpu=self.gpu)
            except Exception as exc:  # noqa: BLE001 - a failed stage is reported, the others still run
                out["decode"] = failed("decode", _one_line(exc), streams)
            self._said(out["decode"])
        batch_stages = {"preprocess", "inference", "inference-under-decode"} & set(opts.stages)
        if not frames and batch_stages:
            # decode not asked for, or run in workers (whose pictures go with them): a short run in
            # threads, only to get frames for the batch stages
            threads_cfg = cfg.model_copy(update={"decode": cfg.decode.model_copy(update={"workers": 0})})
            try:
                frames = measure_decode(fast, threads_cfg, Window(0.0, min(1.0, opts.seconds)), keep=2 * batch,
                                        gpu=self.gpu)[1]
            except Exception as exc:  # noqa: BLE001 - the batch stages then report that they had no frames
                self.progress(f"decode for the batch stages: FAILED: {_one_line(exc)}")
        if batch_stages:
            out.update(self._batch_stages(frames, batch, streams))
        if "analytics" in opts.stages:
            out.update(self._analytics())
        if "e2e-fast" in opts.stages:
            out["e2e_fast"] = self._e2e(fast, realtime=False)
        if "e2e-realtime" in opts.stages:
            out["e2e_realtime"] = self._e2e_realtime(streams)
        return out

    def _batch_stages(self, frames: list, batch: int, streams: int) -> dict[str, StageResult]:
        from pipeline.app.gpu_assignment import device_path
        from pipeline.infer import create_backend
        from pipeline.infer.model_spec import resolve_model
        from pipeline.postprocess import DetectionPostprocessor
        from pipeline.preprocess import preprocessor_from_config

        cfg, opts, out = self.cfg, self.options, {}
        # inference-under-decode is judged against the model alone, so it brings the inference stage
        with_model = bool({"inference", "inference-under-decode"} & set(opts.stages))
        if not frames:
            for name in ("preprocess", "inference", "postprocess"):
                out[name] = failed(name, "no decoded frames to feed it (see decode)", batch_size=batch)
            return out
        preprocess = tensor = result = None
        backends: list = []
        try:
            self.progress(f"preprocess: {cfg.preprocess.device}, batch {batch} ...")
            spec = resolve_model(cfg.model)  # the model's input size, conventions, format and classes
            preprocess = preprocessor_from_config(cfg, spec=spec)
            out["preprocess"], tensor = measure_preprocess(preprocess, frames, batch, opts.seconds, self.gpu)
            self._said(out["preprocess"])
            if with_model:
                self.progress(f"inference: {cfg.model.backend} on {cfg.preprocess.device}, batch {batch} ...")
                # the same arguments as the daemon: the model runs where preprocessing puts its tensor
                for _ in range(cfg.model.instances):
                    backends.append(create_backend(cfg.model, batch, device_path(cfg).model_device))
                out["inference"], result = measure_inference(backends, tensor, opts.seconds, self.gpu)
                self._said(out["inference"])
                post = DetectionPostprocessor.for_model(spec, cfg.model.score_threshold, cfg.model.iou_threshold,
                                                        cfg.model.max_detections)
                out["postprocess"] = measure_postprocess(post, result, opts.seconds, self.gpu)
                self._said(out["postprocess"])
            if "inference-under-decode" in opts.stages:
                out["inference_under_decode"] = self._inference_under_decode(backends, tensor, streams)
        except Exception as exc:  # noqa: BLE001
            for name in ("preprocess", "inference", "postprocess"):
                if name not in out and (name == "preprocess" or with_model):
                    out[name] = failed(name, _one_line(exc), batch_size=batch)
        finally:
            tensor = result = None  # a GPU batch lives in the preprocessor's memory: release it first
            for closable in (*backends, preprocess):
                if closable is not None:
                    closable.close()
        if "preprocess" not in opts.stages:
            out.pop("preprocess", None)
        return out

    def _inference_under_decode(self, backends: list, tensor: Any, streams: int) -> StageResult:
        cfg, opts, name = self.cfg, self.options, "inference_under_decode"
        batch = cfg.scheduler.max_batch
        if len(backends) != 1:
            # a second copy would record its CUDA graphs on its own thread while the cameras decode,
            # which ONNX Runtime cannot do (capture is process-wide)
            result = failed(name, f"runs with model.instances 1 only (the config has {len(backends)})", streams, batch)
        else:
            cameras = bench_cameras(cfg, streams, realtime=True, media=opts.media)
            self.progress(f"{name}: batch {batch} while {streams} stream(s) decode in real time, "
                          f"{self.window.warmup_s:g} + {self.window.seconds:g} s ...")
            try:
                result = measure_inference_under_decode(backends[0], tensor, cameras, cfg, self.window,
                                                        stream_target_fps(cameras)[0], self.gpu)
            except Exception as exc:  # noqa: BLE001 - a failed stage is reported, the others still run
                result = failed(name, _one_line(exc), streams, batch)
        self._said(result)
        return result

    def _analytics(self) -> dict[str, StageResult]:
        from pipeline.tools.bench.analytics import measure_analytics

        out = {}
        cams, shards = self.options.analytics_cameras, self.options.analytics_shards
        for dets in (10, 50):
            name = f"analytics_{dets}"
            self.progress(f"{name}: tracking + 1 zone + 1 line, {cams} camera(s) x {dets} detections/frame, "
                          f"{shards} process(es), {self.window.seconds:g} s ...")
            try:
                out[name] = measure_analytics(cams, dets, self.window.seconds, shards, self.gpu)
            except Exception as exc:  # noqa: BLE001 - a failed stage is reported, the others still run
                out[name] = failed(name, _one_line(exc), cams)
            self._said(out[name])
        return out

    def _e2e(self, cameras: list[CameraConfig], realtime: bool) -> StageResult:
        stage = "e2e_realtime" if realtime else "e2e_fast"
        self.progress(f"{stage}: daemon with {len(cameras)} stream(s) for {self.options.warmup_s:g} + "
                      f"{self.options.seconds:g} s ...")
        try:
            target = stream_target_fps(cameras)[0] if realtime else None
            result = run_daemon(self.cfg, cameras, realtime, self.window, self.gpu, target, self.options.criteria,
                                self.options.detections_per_frame)
        except Exception as exc:  # noqa: BLE001
            result = failed(stage, _one_line(exc), len(cameras))
        self._said(result)
        return result

    def _e2e_realtime(self, streams: int) -> StageResult:
        """The daemon with `streams` real-time streams: the e2e_realtime stage, a find-max trial, a confirmation."""
        return self._e2e(bench_cameras(self.cfg, streams, realtime=True, media=self.options.media), realtime=True)

    def _said(self, r: StageResult) -> None:
        if r.error:
            self.progress(f"  {r.stage}: FAILED: {r.error}")
            return
        extra = ""
        if r.latency_ms:
            extra += f", p99 {r.latency_ms.p99:.0f} ms"
        if r.held is not None:
            extra += f", {'held' if r.held else 'NOT held: ' + str(r.held_reason)}"
        self.progress(f"  {r.stage}: {r.fps:.1f} frames/s{extra}")

    # ------------------------------------------------------------------ --find-max

    def find_max(self) -> dict[str, Any]:
        trials: dict[int, StageResult] = {}

        def holds(n: int) -> bool:
            trials[n] = self._e2e_realtime(n)
            return bool(trials[n].held)

        best = find_max_streams(holds, self.options.streams, self.options.max_streams)
        return {"max_streams": best, "limit_reached": best >= self.options.max_streams,
                "criteria": asdict(self.options.criteria),
                "trials": [_trial_json(trials[n]) for n in trials]}

    def confirm(self, search: dict[str, Any], full_run: StageResult | None) -> None:
        """Add to `search` the count a second real-time run held: N when the full run at N held, else the
        first of N-1, N-2, ... (at most --confirm-steps) that holds; None when none did or the full run
        had no e2e_realtime stage."""
        found = search["max_streams"]
        runs: list[StageResult] = []

        def holds(n: int) -> bool:
            runs.append(self._e2e_realtime(n))
            return bool(runs[-1].held)

        confirmed = None
        if full_run is not None and found >= 1:
            if full_run.held:
                confirmed = found
            else:
                self.progress(f"find-max: the full run at N={found} did not hold; confirming below it ...")
                confirmed = confirm_below(holds, found, self.options.confirm_steps)
        search["confirmed_streams"] = confirmed
        search["confirm_runs"] = [_trial_json(r) for r in runs]


def _trial_json(r: StageResult) -> dict[str, Any]:
    return {"streams": r.streams, "held": r.held, "reason": r.held_reason or r.error, "fps": r.fps,
            "target_fps": r.target_fps, "p99_ms": r.latency_ms.p99 if r.latency_ms else None,
            "drop_fraction": r.drops.drop_fraction if r.drops else None}


def confirm_below(holds: Callable[[int], bool], found: int, steps: int) -> int | None:
    """The first of found-1, found-2, ... (at most `steps` of them, none below 1) for which holds(n)."""
    for n in range(found - 1, max(0, found - 1 - steps), -1):
        if holds(n):
            return n
    return None


def find_max_streams(holds: Callable[[int], bool], start: int, limit: int) -> int:
    """The largest n in [1, limit] for which holds(n), assuming it holds up to some n and fails above:
    double from `start` until it fails (or `limit`), then bisect. 0 if even n=1 fails."""
    start = max(1, min(start, limit))
    good, bad = 0, None
    n = start
    while True:
        if holds(n):
            good = n
            if n >= limit:
                break
            n = min(2 * n, limit)
        else:
            bad = n
            break
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        if holds(mid):
            good = mid
        else:
            bad = mid
    return good


# ---------------------------------------------------------------------------------------------- report

def machine_info(gpu: GpuMemoryReader) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "cpus_usable": usable,
            "load_avg": [round(x, 2) for x in os.getloadavg()], "gpu": gpu.name, "gpu_mem_scope": gpu.scope}


def pipeline_info(cfg: PipelineConfig, cameras: list[CameraConfig]) -> dict[str, Any]:
    return {"decode_device": cfg.decode.device, "decode_workers": cfg.decode.workers,
            "preprocess_device": cfg.preprocess.device, "backend": cfg.model.backend, "precision": cfg.model.precision, "model": str(cfg.model.path),
            "input_size": cfg.model.input_size, "model_instances": cfg.model.instances,
            "max_batch": cfg.scheduler.max_batch,
            "max_wait_ms": cfg.scheduler.max_wait_ms, "queue_per_camera": cfg.scheduler.queue_per_camera,
            "media": media_names(cameras)}


def print_progress(line: str) -> None:
    # the clock lets a GPU utilisation log (nvidia-smi dmon -o T) be lined up with the stages
    print(f"bench {time.strftime('%H:%M:%S')}: {line}", file=sys.stderr, flush=True)


def run_bench(cfg: PipelineConfig, options: BenchOptions, config_path: str = "",
              progress: Progress | None = None) -> dict[str, Any]:
    """Run everything the options ask for; the JSON-ready report."""
    progress = progress or print_progress
    run = BenchRun(cfg, options, progress)
    started = time.time()
    load_start = machine_info(run.gpu)["load_avg"]
    search = None
    streams = options.streams
    if options.find_max:
        search = run.find_max()
        streams = max(1, search["max_streams"])
        progress(f"find-max: largest N that held real time: {search['max_streams']}; full run at N={streams}")
    stages = run.stages(streams)
    if search is not None:
        run.confirm(search, stages.get("e2e_realtime"))
    cameras = bench_cameras(cfg, streams, realtime=True, media=options.media)
    try:
        per_stream = stream_target_fps(cameras)[1]
    except ValueError:
        per_stream = None
    machine = machine_info(run.gpu)
    machine["load_avg_start"] = load_start
    return {
        "schema": REPORT_SCHEMA,
        "config": config_path,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "options": {"streams": options.streams, "seconds": options.seconds, "warmup_s": options.warmup_s,
                    "media": str(options.media) if options.media else None, "stages": list(options.stages),
                    "find_max": options.find_max, "max_streams": options.max_streams,
                    "confirm_steps": options.confirm_steps,
                    "criteria": asdict(options.criteria), "detections_per_frame": options.detections_per_frame},
        "machine": machine,
        "pipeline": pipeline_info(cfg, cameras),
        "streams": streams,
        "stages": {name: stages[name].to_json() if name in stages else None for name in STAGES},
        "summary": summarise(stages, per_stream, shared_gpu=cfg.preprocess.device == "gpu"),
        "find_max": search,
    }


def print_report(report: dict[str, Any], out=sys.stdout) -> None:
    from pipeline.tools.bench.report import stage_from_json

    stages = {name: stage_from_json(r) for name, r in report["stages"].items() if r is not None}
    m, p = report["machine"], report["pipeline"]
    print(f"pipeline bench: {report['streams']} stream(s) of {', '.join(p['media'])}; decode {p['decode_device']}"
          f"{' in %d worker processes' % p['decode_workers'] if p.get('decode_workers') else ''}, "
          f"preprocess {p['preprocess_device']}, {p['backend']} {p['precision']} {Path(p['model']).name} "
          f"@{p['input_size']}{' x%d instances' % p['model_instances'] if p.get('model_instances', 1) > 1 else ''}, "
          f"batch {p['max_batch']}"
          f"{'; %d synthetic detections added a frame' % report['options']['detections_per_frame'] if report['options'].get('detections_per_frame') else ''}",
          file=out)
    print(f"machine: {m['cpus_usable']} CPU(s), GPU {m['gpu'] or 'none'}, load average at start "
          f"{'/'.join(str(x) for x in m['load_avg_start'])}", file=out)
    print(format_table(stages, report["summary"]), file=out)
    search = report["find_max"]
    if search:
        tried = _tried(search["trials"])
        print(f"find-max: largest N that held real time = {search['max_streams']}"
              f"{' (the --max-streams limit)' if search['limit_reached'] else ''}; tried {tried}", file=out)
        if "confirmed_streams" in search:  # reports from before the confirmation step have no such key
            print(f"find-max: {confirmation_line(search, report['stages'].get('e2e_realtime'))}", file=out)


def _tried(trials: list[dict[str, Any]]) -> str:
    """'132:held, 160:no, ...' of a search's or a confirmation's runs."""
    return ", ".join(f"{t['streams']}:{'held' if t['held'] else 'no'}" for t in trials)


def confirmation_line(search: dict[str, Any], full_run: dict[str, Any] | None) -> str:
    """What a second run made of the search's N, in words."""
    found, confirmed = search["max_streams"], search["confirmed_streams"]
    if full_run is None or found < 1:
        return "not confirmed (no real-time run at the N found: add e2e-realtime to --stages)"
    if confirmed == found:
        return f"confirmed: the full run at {found} held too"
    tried = _tried(search["confirm_runs"])
    said = f"the full run at {found} did not hold ({full_run['held_reason'] or full_run['error']})"
    if confirmed is None:
        return f"{said}; nothing below it held either ({tried or 'none tried: --confirm-steps 0'})"
    return f"{said}; confirmed: {confirmed} held ({tried})"


# ---------------------------------------------------------------------------------------------- CLI

def bench_command(args: Any, cfg: PipelineConfig) -> int:
    """`pipeline bench`: exit 0, 1 if a stage failed, 2 on bad options."""
    try:
        options = BenchOptions(
            streams=len(cfg.cameras) if args.streams is None else args.streams, seconds=args.seconds, warmup_s=args.warmup,
            media=Path(args.media) if args.media else None,
            stages=tuple(s.strip() for s in args.stages.split(",") if s.strip()),
            criteria=HoldCriteria(args.max_drop, args.max_p99, args.min_rate),
            find_max=args.find_max, max_streams=args.max_streams, confirm_steps=args.confirm_steps,
            analytics_cameras=args.analytics_cameras, analytics_shards=args.analytics_shards,
            detections_per_frame=args.detections_per_frame)
        if options.media is not None and not options.media.is_file():
            raise ValueError(f"--media {options.media}: no such file")
    except ValueError as exc:
        print(f"pipeline bench: {exc}", file=sys.stderr)
        return 2
    if not args.verbose:
        logging.getLogger("pipeline").setLevel(logging.WARNING)  # N cameras x state changes is noise here
    report = run_bench(cfg, options, config_path=args.config)
    print_report(report)
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            print(f"pipeline bench: --json {args.json}: cannot write: {exc.strerror}", file=sys.stderr)
            return 1
    return 1 if any(r and r["error"] for r in report["stages"].values()) else 0
