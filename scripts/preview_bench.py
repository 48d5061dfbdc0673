"""Cost of the preview (issue 19), measured with `pipeline bench` end to end (e2e_fast: the real
Daemon, N streams as fast as possible, a real subscriber):

  off        no preview section
  on         preview on, nobody watching (the taps run on every frame and do nothing)
  watched    preview on and a client polling every stream like the grid page does
             (/api/cameras?watch=... at preview.fps, then each new frame's JPEG)

Runs are interleaved (off, on, watched, off, on, watched, ...) so load drifting on a shared box hits
each variant alike; the spread of the `off` runs is the run-to-run noise the others are judged by.

    python scripts/preview_bench.py [configs/demo.yaml] [--streams 4] [--seconds 8] [--repeats 3] [--fps 2]
"""
from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Watcher(threading.Thread):
    """A browser stand-in: polls the camera list naming every stream, fetches each new frame."""

    def __init__(self, base: str, cameras: list[str], fps: float) -> None:
        super().__init__(daemon=True)
        self.base, self.cameras, self.period = base, cameras, 1.0 / fps
        self.stop = threading.Event()
        self.jpegs = 0
        self.cpu_samples: list[tuple[float, float]] = []  # (monotonic s, the preview's own CPU s)

    def cpu_per_s(self) -> float:
        """The preview threads' CPU seconds per second, from the first frame served to the last poll."""
        busy = [(t, c) for t, c in self.cpu_samples if c > 0]
        if len(busy) < 2 or busy[-1][0] <= busy[0][0]:
            return float("nan")
        return (busy[-1][1] - busy[0][1]) / (busy[-1][0] - busy[0][0])

    def run(self) -> None:
        seen: dict[str, str] = {}
        while not self.stop.wait(self.period):
            try:
                doc = json.loads(urllib.request.urlopen(
                    f"{self.base}/api/cameras?watch={','.join(self.cameras)}", timeout=2).read())
            except OSError:
                continue  # the daemon is not up yet (bench warm-up) or already gone
            self.cpu_samples.append((time.monotonic(), doc["preview_cpu_s"]))
            for cam in doc["cameras"]:
                frame = cam.get("frame")
                if frame and seen.get(cam["id"]) != frame["url"]:
                    seen[cam["id"]] = frame["url"]
                    try:
                        urllib.request.urlopen(self.base + frame["url"], timeout=2).read()
                        self.jpegs += 1
                    except OSError:
                        pass


def absolute_paths(doc: dict, base: Path) -> None:
    """The copy lives in a temp folder: the paths the original had relative to its folder become absolute."""
    for cam in doc["cameras"]:
        if "://" not in cam["url"] and not cam["url"].startswith("synthetic:"):
            cam["url"] = str(base / cam["url"])
    for key in ("path", "labels"):
        if isinstance(doc["model"].get(key), str):
            doc["model"][key] = str(base / doc["model"][key])


def run_bench(config: Path, args: argparse.Namespace, out: Path) -> tuple[float, float, float]:
    """(frames/s, CPU ms per frame, CPU seconds per second): on a shared box the CPU time per frame
    moves much less with other people's load than the throughput does."""
    cmd = [sys.executable, "-m", "pipeline", "bench", str(config), "--stages", "e2e-fast", "--streams",
           str(args.streams), "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--json", str(out)]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    stage = report["stages"]["e2e_fast"]
    fps = float(stage["fps"])
    cpu = float(stage["resources"]["cpu_percent"]) / 100.0
    return fps, (cpu / fps * 1000.0 if fps else float("nan")), cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config", nargs="?", default=str(REPO / "configs" / "demo.yaml"))
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fps", type=float, default=2.0, help="preview.fps, and how often the watcher polls")
    args = ap.parse_args()
    base_doc = yaml.safe_load(Path(args.config).read_text())
    base_dir = Path(args.config).resolve().parent
    templates = [c["id"] for c in base_doc["cameras"]]
    stream_ids = [f"{templates[i % len(templates)]}-{i}" for i in range(args.streams)]  # bench_cameras' ids
    results: dict[str, list[float]] = {"off": [], "on": [], "watched": []}
    cpu_ms: dict[str, list[float]] = {"off": [], "on": [], "watched": []}
    jpegs = []
    preview_share: list[float] = []  # watched runs: the preview threads' CPU / the whole process's CPU
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for variant in results:
                doc = json.loads(json.dumps(base_doc))
                port = free_port()
                if variant != "off":
                    doc["preview"] = {"bind": f"127.0.0.1:{port}", "fps": args.fps}
                absolute_paths(doc, base_dir)
                config = Path(tmp) / f"preview-bench-{variant}.yaml"
                config.write_text(yaml.safe_dump(doc, sort_keys=False))
                watcher = Watcher(f"http://127.0.0.1:{port}", stream_ids, args.fps) if variant == "watched" else None
                if watcher:
                    watcher.start()
                try:
                    fps, ms, cpu_per_s = run_bench(config, args, Path(tmp) / f"{variant}-{repeat}.json")
                finally:
                    if watcher:
                        watcher.stop.set()
                        watcher.join()
                        jpegs.append(watcher.jpegs)
                if watcher:
                    preview_share.append(watcher.cpu_per_s() / cpu_per_s * 100)
                results[variant].append(fps)
                cpu_ms[variant].append(ms)
                print(f"run {repeat + 1}/{args.repeats} {variant:8s} e2e_fast {fps:8.1f} frames/s {ms:6.2f} CPU ms/frame"
                      + (f"  ({watcher.jpegs} JPEGs fetched; preview threads {watcher.cpu_per_s() * 1000:.1f} ms "
                         f"CPU/s = {preview_share[-1]:.2f} % of the process)" if watcher else ""), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    print(f"\n# commit {commit}, {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPUs; "
          f"{args.streams} streams, {args.seconds:g} s windows, {args.repeats} runs each, preview.fps {args.fps:g}")
    off_mean = statistics.mean(results["off"])
    spread = (max(results["off"]) - min(results["off"])) / off_mean * 100
    cpu_off = statistics.median(cpu_ms["off"])
    cpu_spread = (max(cpu_ms["off"]) - min(cpu_ms["off"])) / cpu_off * 100
    for variant, values in results.items():
        mean = statistics.mean(values)
        cpu = statistics.median(cpu_ms[variant])
        print(f"{variant:8s} mean {mean:8.1f} frames/s  min {min(values):8.1f}  max {max(values):8.1f}  "
              f"vs off {100 * (mean / off_mean - 1):+6.1f} %   CPU {cpu:6.2f} ms/frame (median) "
              f"vs off {100 * (cpu / cpu_off - 1):+6.1f} %")
    print(f"watched: the preview's own threads used {statistics.median(preview_share):.2f} % (median; "
          f"max {max(preview_share):.2f} %) of the process's CPU time (pipeline_preview_cpu_seconds_total)")
    print(f"run-to-run spread of off: throughput {spread:.1f} %, CPU ms/frame {cpu_spread:.1f} % (max - min over mean/median)")


if __name__ == "__main__":
    main()
