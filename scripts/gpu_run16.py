"""GPU path measurements in one run: decode, preprocess and inference ceilings, then the whole daemon
with N cameras as fast as possible and paced in real time. Writes a JSON report and prints a table.

    python3 scripts/gpu_run16.py CONFIG [--streams 16] [--seconds 20] [--json out.json]

CONFIG is a daemon config (configs/bench-gpu.yaml): its first camera's clip is what every stream
plays, its model/scheduler/preprocess settings are used as they are. Stages:

  decode     N threads, each a NvdecPictureDecoder (PyAV demux -> NVDEC -> device RGB copy) on the clip
  preprocess DALI gpu letterbox of batches of max_batch decoded 1080p device frames
  inference  ONNX Runtime CUDA EP with IO binding at batch max_batch, on DALI's device output
  e2e-max    the daemon in process, N file cameras (realtime: false, loop), frames published per second
  e2e-rt     the same with realtime: true (each camera at the clip's fps): drops and capture->publish latency
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import PipelineConfig, load_config  # noqa: E402
from pipeline.daemon import Daemon, DaemonOptions  # noqa: E402
from pipeline.frame import Frame, FrameBatch  # noqa: E402
from pipeline.infer import create_backend  # noqa: E402
from pipeline.preprocess import create_preprocessor  # noqa: E402
from pipeline.publish.subscriber import Subscriber  # noqa: E402
from pipeline.sources.decoding import open_video  # noqa: E402
from pipeline.sources.nvdec import NvdecPictureDecoder  # noqa: E402


def decode_ceiling(clip: str, streams: int, seconds: float) -> dict[str, Any]:
    counts = [0] * streams
    stop = threading.Event()
    fallbacks: list[str] = []

    def work(i: int) -> None:
        dec = NvdecPictureDecoder(0, f"d{i}", fallbacks.append)
        try:
            while not stop.is_set():
                video = open_video(clip)
                try:
                    for _ in dec.pictures(video, lambda reason: None):
                        counts[i] += 1
                        if stop.is_set():
                            break
                finally:
                    video.close()
        finally:
            dec.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(streams)]
    for t in threads:
        t.start()
    time.sleep(2.0)  # warm-up: decoder creation
    start_counts, t0 = sum(counts), time.perf_counter()
    time.sleep(seconds)
    n, dt = sum(counts) - start_counts, time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(10)
    return {"streams": streams, "frames_per_s": n / dt, "fallbacks": fallbacks}


def device_frames(clip: str, count: int) -> list[Frame]:
    dec = NvdecPictureDecoder(0, "pre", lambda r: None)
    video = open_video(clip)
    frames = []
    for i, pic in enumerate(dec.pictures(video, lambda r: None)):
        h, w = pic.image.shape[:2]
        frames.append(Frame(f"c{i}", i, pic.pts, time.time(), w, h, pic.image))
        if len(frames) >= count:
            break
    video.close()
    return frames


def timed(fn, seconds: float) -> tuple[int, float]:
    for _ in range(3):
        fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n, time.perf_counter() - t0


def preprocess_and_infer_ceilings(cfg: PipelineConfig, clip: str, seconds: float) -> dict[str, Any]:
    batch_size = cfg.scheduler.max_batch
    dtype = np.float16 if cfg.model.precision == "fp16" else np.float32
    frames = device_frames(clip, batch_size)
    batch = FrameBatch(tuple(frames), 0.0, 0.0)
    out: dict[str, Any] = {"batch": batch_size, "precision": cfg.model.precision}
    with create_preprocessor("gpu", cfg.model.input_size, dtype, batch_size, cfg.preprocess.num_threads) as pre:
        n, dt = timed(lambda: pre(batch), seconds)
        out["preprocess_frames_per_s"] = n * batch_size / dt
        tensor = pre(batch)
        with create_backend(cfg.model, batch_size, "gpu") as backend:
            n, dt = timed(lambda: backend.infer(tensor), seconds)
            out["inference_frames_per_s"] = n * batch_size / dt
            # both stages from two threads at once, as the daemon runs them: do they overlap?
            done = threading.Event()
            counts = {"pre": 0, "inf": 0}

            def loop(name: str, fn) -> None:
                while not done.is_set():
                    fn()
                    counts[name] += 1

            threads = [threading.Thread(target=loop, args=("pre", lambda: pre(batch))),
                       threading.Thread(target=loop, args=("inf", lambda: backend.infer(tensor)))]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            time.sleep(seconds)
            done.set()
            for t in threads:
                t.join()
            dt = time.perf_counter() - t0
            out["concurrent_preprocess_frames_per_s"] = counts["pre"] * batch_size / dt
            out["concurrent_inference_frames_per_s"] = counts["inf"] * batch_size / dt
    return out


def with_cameras(cfg: PipelineConfig, streams: int, realtime: bool) -> PipelineConfig:
    base = cfg.cameras[0]
    cams = [base.model_copy(update={"id": f"cam{i:02d}", "realtime": realtime, "loop": True}) for i in range(streams)]
    return cfg.model_copy(update={"cameras": cams, "metrics": cfg.metrics.model_copy(update={"bind": None})})


def stage_sum(daemon: Daemon, stage: str) -> tuple[float, float]:
    reg = daemon.metrics.registry
    total = reg.get_sample_value("pipeline_stage_seconds_sum", {"stage": stage}) or 0.0
    count = reg.get_sample_value("pipeline_stage_seconds_count", {"stage": stage}) or 0.0
    return total, count


def published(daemon: Daemon, cams: list[str]) -> float:
    return sum(daemon.metrics.value("pipeline_frames_published_total", camera=c) for c in cams)


def dropped(daemon: Daemon) -> float:
    total = 0.0
    for metric in daemon.metrics.registry.collect():
        if metric.name == "pipeline_frames_dropped":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


def run_daemon(cfg: PipelineConfig, seconds: float, warmup: float) -> dict[str, Any]:
    cams = [c.id for c in cfg.cameras]
    daemon = Daemon(cfg, DaemonOptions(status_interval_s=0))
    latencies: list[float] = []
    sub = Subscriber(cfg.publish.bind, kinds=("det",))
    stop_sub = threading.Event()

    def collect() -> None:
        while not stop_sub.is_set():
            got = sub.recv(timeout=0.2)
            if got is not None and collecting.is_set():
                _, msg = got
                latencies.append(msg["published_at"] - msg["captured_at"])

    collecting = threading.Event()
    listener = threading.Thread(target=collect, daemon=True)
    listener.start()
    daemon.start()
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
    runner.start()
    time.sleep(warmup)
    p0, d0, t0 = published(daemon, cams), dropped(daemon), time.perf_counter()
    s0 = {s: stage_sum(daemon, s) for s in ("preprocess", "inference", "postprocess")}
    b0 = (daemon.metrics.value("pipeline_batch_size_sum"), daemon.metrics.value("pipeline_batch_size_count"))
    dec0 = sum(daemon.metrics.value("pipeline_frames_decoded_total", camera=c) for c in cams)
    collecting.set()
    time.sleep(seconds)
    collecting.clear()
    dt = time.perf_counter() - t0
    p1, d1 = published(daemon, cams), dropped(daemon)
    s1 = {s: stage_sum(daemon, s) for s in ("preprocess", "inference", "postprocess")}
    b1 = (daemon.metrics.value("pipeline_batch_size_sum"), daemon.metrics.value("pipeline_batch_size_count"))
    dec1 = sum(daemon.metrics.value("pipeline_frames_decoded_total", camera=c) for c in cams)
    per_cam = [daemon.metrics.value("pipeline_frames_published_total", camera=c) for c in cams]
    stop.set()
    runner.join(15)
    stop_sub.set()
    listener.join(2)
    sub.close()
    frames = b1[0] - b0[0]
    out: dict[str, Any] = {
        "cameras": len(cams), "seconds": dt, "published_frames_per_s": (p1 - p0) / dt,
        "decoded_frames_per_s": (dec1 - dec0) / dt, "dropped": d1 - d0,
        "mean_batch": frames / max(1.0, b1[1] - b0[1]),
        "per_camera_published_min_max": [min(per_cam), max(per_cam)],
    }
    for stage in s1:
        busy = s1[stage][0] - s0[stage][0]
        out[f"{stage}_busy_fraction"] = busy / dt
        out[f"{stage}_frames_per_busy_s"] = frames / busy if busy > 0 else None
    if latencies:
        lat = np.array(latencies) * 1000
        out["latency_ms_p50_p95_p99"] = [float(np.percentile(lat, q)) for q in (50, 95, 99)]
    return out


def gpu_monitor(seconds: int) -> subprocess.Popen | None:
    try:
        return subprocess.Popen(["nvidia-smi", "dmon", "-s", "um", "-c", str(seconds)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--stage-seconds", type=float, default=5.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", default="decode,stages,e2e-max,e2e-rt")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval (s) for the run: how long a thread may hold the GIL")
    args = ap.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    clip = cfg.cameras[0].url
    only = set(args.only.split(","))
    report: dict[str, Any] = {"config": args.config, "clip": clip, "streams": args.streams,
                              "switch_interval_s": sys.getswitchinterval(),
                              "model": str(cfg.model.path), "precision": cfg.model.precision,
                              "max_batch": cfg.scheduler.max_batch}
    sections = [
        ("decode", lambda: decode_ceiling(clip, args.streams, args.seconds)),
        ("stages", lambda: preprocess_and_infer_ceilings(cfg, clip, args.stage_seconds)),
        ("e2e-max", lambda: run_daemon(with_cameras(cfg, args.streams, False), args.seconds, 4.0)),
        ("e2e-rt", lambda: run_daemon(with_cameras(cfg, args.streams, True), args.seconds, 4.0)),
    ]
    for name, fn in sections:
        if name not in only:
            continue
        mon = gpu_monitor(int(args.seconds) + 6) if name.startswith("e2e") or name == "decode" else None
        t = time.time()
        try:
            report[name] = fn()
        except Exception as exc:  # noqa: BLE001 - report what failed, measure the rest
            logging.exception("%s failed", name)
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        if mon is not None:
            mon.terminate()
            lines = (mon.communicate(timeout=5)[0] or "").splitlines()
            report[name]["nvidia_smi_dmon"] = lines[:2] + lines[2::max(1, len(lines) // 12)]
        print(f"== {name} ({time.time() - t:.0f} s): {json.dumps(report[name], default=str)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print("\nstage                      frames/s")
    dec = report.get("decode", {}).get("frames_per_s")
    st = report.get("stages", {})
    rows = [("decode (NVDEC, N streams)", dec), ("preprocess (DALI gpu)", st.get("preprocess_frames_per_s")),
            ("inference (ORT CUDA)", st.get("inference_frames_per_s")),
            ("end to end, max", report.get("e2e-max", {}).get("published_frames_per_s")),
            ("end to end, real time", report.get("e2e-rt", {}).get("published_frames_per_s"))]
    for label, value in rows:
        print(f"{label:26} {value:10.0f}" if isinstance(value, (int, float)) else f"{label:26} {'-':>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
