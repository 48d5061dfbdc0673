"""Soak test: the real daemon with N cameras (looping files plus RTSP streams from a real GStreamer
server) for a given time, watched from outside like an operator would.

    python3 scripts/soak.py --duration 3600 --cameras 16 --rtsp 4 --fps 10 --out .cache/soak-1h

Every --sample-every seconds (default 60) it records the daemon's RSS, open file descriptors and
threads (from /proc), counters scraped from /metrics, and what a healthy subscriber received (rate,
seq gaps, latency). At the end it stops the daemon with SIGTERM and checks its exit summary
(decoded = published + dropped per camera).

Writes into --out: samples.csv (one row per sample), soak.png (RSS, fds and rate over time;
matplotlib if importable, else drawn with OpenCV), summary.json (settings, measurements and the
verdict), config.yaml and daemon.log. Exit code 0 when every check passed, 1 otherwise.

Checks (after --warmup seconds): RSS and open fds grow less than --max-growth (5 %) from the first
sample after warm-up to the last; zero seq gaps on the healthy subscriber; every camera still
publishing in the last sample window; SIGTERM exit within 5 s with code 0; no frame unaccounted.
"""
from __future__ import annotations

import argparse
import csv
import json
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from pipeline.publish.messages import MessageError  # noqa: E402
from pipeline.publish.subscriber import Subscriber  # noqa: E402
from tests.support.reliability import (free_port, metric_sum, open_fds, rss_bytes,  # noqa: E402
                                                   scrape_metrics, summaries, tiny_model_section)
from tests.support.media import make_clip  # noqa: E402
from tests.support.rtsp_server import RtspServer, rtsp_server_unavailable  # noqa: E402

SIGTERM_BUDGET_S = 5.0


@dataclass
class CameraTrack:
    """What the healthy subscriber saw of one camera."""

    received: int = 0
    next_seq: int | None = None
    gaps: int = 0  # messages missing between consecutive seqs
    disorder: int = 0  # seq going backwards or repeating
    last_at: float = 0.0  # monotonic time of the last message


@dataclass
class SubscriberView:
    cameras: dict[str, CameraTrack] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # since the last sample
    window_received: int = 0

    def take(self, topic: str, msg: dict) -> None:
        if not topic.startswith("det/"):
            return
        track = self.cameras.setdefault(msg["camera"], CameraTrack())
        seq = msg["seq"]
        if track.next_seq is not None:
            if seq > track.next_seq:
                track.gaps += seq - track.next_seq
            elif seq < track.next_seq:
                track.disorder += 1
        track.next_seq = seq + 1
        track.received += 1
        track.last_at = time.monotonic()
        self.latencies.append(msg["published_at"] - msg["captured_at"])
        self.window_received += 1


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    rss_mib: float
    fds: int
    threads: int
    received: int
    rate_per_s: float
    seq_gaps: int
    latency_p50_ms: float
    latency_max_ms: float
    published_total: float
    frames_dropped_total: float
    messages_dropped_total: float
    cameras_up: float


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def build_setup(args: argparse.Namespace, out: Path) -> tuple[Path, list[RtspServer], list[str]]:
    """Media, servers and the daemon config; returns (config path, servers to stop, camera ids)."""
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    cameras: list[dict] = []
    servers: list[RtspServer] = []
    n_files = args.cameras - args.rtsp
    for i in range(n_files):
        clip = make_clip(media / f"file{i:02d}.mp4", args.width, args.height, frames=args.fps * args.clip_seconds,
                         fps=args.fps, first_index=i * 7)  # each camera shows another part of the pattern
        cameras.append({"id": f"file{i:02d}", "url": str(clip), "loop": True, "realtime": True})
    if args.rtsp:
        why = rtsp_server_unavailable()
        if why:
            raise SystemExit(f"soak: --rtsp {args.rtsp} needs the GStreamer RTSP server: {why}")
        # One server process, one shared encoder: the RTSP cameras cost the box one x264 encode.
        server = RtspServer(mount="/soak", width=args.width, height=args.height, fps=args.fps, shared=True).start()
        servers.append(server)
        cameras += [{"id": f"rtsp{i:02d}", "url": server.url} for i in range(args.rtsp)]
    if args.model:
        model = {"path": str(Path(args.model).resolve()), "labels": str(Path(args.labels).resolve()),
                 "input_size": args.input_size}
    else:
        model = tiny_model_section(out, input_size=args.input_size)
    doc = {"cameras": cameras, "model": model,
           "scheduler": {"max_batch": args.max_batch, "max_wait_ms": 30, "queue_per_camera": 4},
           "publish": {"bind": f"tcp://127.0.0.1:{free_port()}", "high_water_mark": 10000},
           "metrics": {"bind": f"127.0.0.1:{free_port()}"}}
    config = out / "config.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config, servers, [c["id"] for c in cameras]


def take_sample(pid: int, started: float, view: SubscriberView, metrics_port: int, window_s: float) -> Sample:
    # /proc first: the scrape itself briefly adds a thread and a socket to the daemon
    rss, fds, threads = rss_bytes(pid), open_fds(pid), threads_of(pid)
    m = scrape_metrics(metrics_port)
    lat = view.latencies or [float("nan")]
    sample = Sample(
        elapsed_s=round(time.monotonic() - started, 1),
        rss_mib=round(rss / 2**20, 2),
        fds=fds,
        threads=threads,
        received=sum(t.received for t in view.cameras.values()),
        rate_per_s=round(view.window_received / window_s, 2) if window_s > 0 else 0.0,
        seq_gaps=sum(t.gaps for t in view.cameras.values()),
        latency_p50_ms=round(statistics.median(lat) * 1000, 1),
        latency_max_ms=round(max(lat) * 1000, 1),
        published_total=metric_sum(m, "pipeline_frames_published_total"),
        frames_dropped_total=metric_sum(m, "pipeline_frames_dropped_total"),
        messages_dropped_total=metric_sum(m, "pipeline_messages_dropped_total"),
        cameras_up=metric_sum(m, "pipeline_camera_up"),
    )
    view.latencies = []
    view.window_received = 0
    return sample


def growth(samples: list[Sample], attr: str, warmup_s: float) -> dict:
    after = [s for s in samples if s.elapsed_s >= warmup_s]
    if len(after) < 2:
        return {"baseline": None, "last": None, "max": None, "growth": None}
    base, last = getattr(after[0], attr), getattr(after[-1], attr)
    return {"baseline": base, "last": last, "max": max(getattr(s, attr) for s in after),
            "growth": round((last - base) / base, 4) if base else None}


def plot(samples: list[Sample], path: Path, title: str) -> str:
    """soak.png: RSS, open fds and received rate over time. Returns which plotter drew it."""
    t = [s.elapsed_s / 60 for s in samples]
    series = [("RSS (MiB)", [s.rss_mib for s in samples]), ("open fds", [s.fds for s in samples]),
              ("received msgs/s", [s.rate_per_s for s in samples])]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _plot_opencv(t, series, path, title)
        return "opencv"
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 7), sharex=True)
    for ax, (name, ys) in zip(axes, series):
        ax.plot(t, ys, marker="o", markersize=3)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return "matplotlib"


def _plot_opencv(t: list[float], series: list[tuple[str, list[float]]], path: Path, title: str) -> None:
    import cv2
    import numpy as np

    w, h_panel, left, pad = 900, 200, 90, 30
    img = np.full((h_panel * len(series) + 40, w, 3), 255, np.uint8)
    cv2.putText(img, title, (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    t_max = max(t[-1], 1e-6) if t else 1.0
    for k, (name, ys) in enumerate(series):
        top = 40 + k * h_panel
        y0, y1 = top + pad // 2, top + h_panel - pad
        lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        cv2.rectangle(img, (left, y0), (w - 20, y1), (180, 180, 180), 1)
        for frac in (0.0, 0.5, 1.0):
            v = lo + (hi - lo) * frac
            y = int(y1 - (y1 - y0) * frac)
            cv2.putText(img, f"{v:.1f}", (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(img, name, (left + 5, y0 + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 160), 1, cv2.LINE_AA)
        pts = np.array([[left + int((w - 20 - left) * ti / t_max), int(y1 - (y1 - y0) * (yi - lo) / (hi - lo))]
                        for ti, yi in zip(t, ys)], np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts], False, (200, 80, 0), 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, (int(p[0]), int(p[1])), 3, (200, 80, 0), -1)
    cv2.putText(img, f"minutes (0 .. {t_max:.1f})", (w // 2 - 60, img.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX,
                0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config, servers, camera_ids = build_setup(args, out)
    doc = yaml.safe_load(config.read_text())
    metrics_port = int(doc["metrics"]["bind"].rsplit(":", 1)[1])
    subscriber = Subscriber(doc["publish"]["bind"], rcvhwm=100_000)
    log = open(out / "daemon.log", "w")
    cmd = [sys.executable, "-m", "pipeline", "run", str(config), "--wait-for-subscribers", "1",
           "--status-interval", str(args.sample_every)]
    daemon = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
    view = SubscriberView()
    samples: list[Sample] = []
    problems: list[str] = []
    stop_took = None
    try:
        # The clock starts with the first message: startup (model load, subscriber handshake) is not soak.
        while not view.cameras:
            if daemon.poll() is not None:
                raise SystemExit(f"soak: the daemon exited at startup (code {daemon.returncode}); see {out}/daemon.log")
            got = subscriber.recv(timeout=0.2)
            if got is not None:
                view.take(*got)
        started = last_sample = time.monotonic()
        samples.append(take_sample(daemon.pid, started, view, metrics_port, 0.0))
        print(f"soak: {len(camera_ids)} cameras ({args.rtsp} RTSP), {args.duration:g} s, sampling every "
              f"{args.sample_every:g} s into {out}", flush=True)
        while time.monotonic() - started < args.duration and daemon.poll() is None:
            try:
                got = subscriber.recv(timeout=0.2)
            except MessageError as exc:
                problems.append(f"malformed message: {exc}")
                continue
            if got is not None:
                view.take(*got)
            now = time.monotonic()
            if now - last_sample >= args.sample_every:
                samples.append(take_sample(daemon.pid, started, view, metrics_port, now - last_sample))
                last_sample = now
                s = samples[-1]
                print(f"  {s.elapsed_s:7.0f} s  rss {s.rss_mib:7.1f} MiB  fds {s.fds:4d}  threads {s.threads:3d}  "
                      f"{s.rate_per_s:6.1f} msg/s  gaps {s.seq_gaps}  latency p50 {s.latency_p50_ms:.0f} ms", flush=True)
        if daemon.poll() is not None:
            problems.append(f"the daemon exited during the soak (code {daemon.returncode})")
        else:
            if time.monotonic() - last_sample > args.sample_every / 2:
                samples.append(take_sample(daemon.pid, started, view, metrics_port, time.monotonic() - last_sample))
            silent = [c for c in camera_ids if time.monotonic() - view.cameras.get(c, CameraTrack()).last_at
                      > args.sample_every]
            if silent:
                problems.append(f"cameras silent for a whole sample window at the end: {', '.join(silent)}")
            daemon.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            while daemon.poll() is None and time.monotonic() - t0 < 30:
                got = subscriber.recv(timeout=0.1)
                if got is not None:
                    view.take(*got)
            stop_took = time.monotonic() - t0
            if daemon.poll() is None:
                daemon.kill()
                problems.append("the daemon ignored SIGTERM for 30 s")
            elif stop_took > SIGTERM_BUDGET_S:
                problems.append(f"SIGTERM took {stop_took:.1f} s (budget {SIGTERM_BUDGET_S:g} s)")
            if daemon.wait() != 0:
                problems.append(f"exit code {daemon.returncode}")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        subscriber.close()
        for server in servers:
            server.kill()

    stderr = (out / "daemon.log").read_text()
    counts = summaries(stderr)
    unaccounted = {c: asdict(s) for c, s in counts.items() if s.decoded != s.published + s.dropped}
    if unaccounted:
        problems.append(f"frames not accounted for (decoded != published + dropped): {sorted(unaccounted)}")
    missing_summaries = sorted(set(camera_ids) - set(counts))
    if missing_summaries and stop_took is not None:
        problems.append(f"no exit summary for: {', '.join(missing_summaries)}")
    gaps = sum(t.gaps for t in view.cameras.values())
    if gaps:
        problems.append(f"{gaps} seq gap(s) on the healthy subscriber")
    if any(t.disorder for t in view.cameras.values()):
        problems.append("seq went backwards")
    rss, fds = growth(samples, "rss_mib", args.warmup), growth(samples, "fds", args.warmup)
    for name, g in (("RSS", rss), ("open fds", fds)):
        if g["growth"] is None:
            problems.append(f"{name}: too few samples after the warm-up to judge")
        elif g["growth"] > args.max_growth:
            problems.append(f"{name} grew {g['growth']:.1%} after the warm-up (limit {args.max_growth:.0%})")

    with open(out / "samples.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(samples[0])))
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)
    title = (f"soak: {len(camera_ids)} cameras ({args.rtsp} RTSP) {args.width}x{args.height}@{args.fps}, "
             f"{args.duration / 60:.1f} min")
    plotter = plot(samples, out / "soak.png", title)
    summary = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {k: v for k, v in vars(args).items()},
        "cameras": camera_ids,
        "samples": len(samples),
        "rss_mib": rss,
        "open_fds": fds,
        "threads_last": samples[-1].threads,
        "received": sum(t.received for t in view.cameras.values()),
        "received_per_camera": {c: t.received for c, t in sorted(view.cameras.items())},
        "seq_gaps": gaps,
        "mean_rate_per_s": round(statistics.mean(s.rate_per_s for s in samples[1:]), 2) if len(samples) > 1 else None,
        "latency_p50_ms_last": samples[-1].latency_p50_ms,
        "frames_dropped_total": samples[-1].frames_dropped_total,
        "messages_dropped_total": samples[-1].messages_dropped_total,
        "sigterm_exit_s": round(stop_took, 2) if stop_took is not None else None,
        "exit_code": daemon.returncode,
        "exit_summaries": {c: asdict(s) for c, s in sorted(counts.items())},
        "plot": f"soak.png ({plotter})",
        "problems": problems,
        "passed": not problems,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"soak: {'PASSED' if not problems else 'FAILED'}; RSS {rss['baseline']} -> {rss['last']} MiB "
          f"({rss['growth']}), fds {fds['baseline']} -> {fds['last']}, gaps {gaps}; {out}/summary.json")
    for p in problems:
        print(f"  problem: {p}")
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=3600, help="seconds of soak after the first message")
    p.add_argument("--cameras", type=int, default=16, help="cameras in total (files + RTSP)")
    p.add_argument("--rtsp", type=int, default=4, help="how many of them are RTSP streams")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=10, help="paced rate of every camera")
    p.add_argument("--clip-seconds", type=int, default=20, help="length of each looping file")
    p.add_argument("--sample-every", type=float, default=60.0, metavar="S")
    p.add_argument("--warmup", type=float, default=300.0, metavar="S", help="growth is judged after this")
    p.add_argument("--max-growth", type=float, default=0.05, help="allowed RSS / fd growth after warm-up")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--model", help="an ONNX detector (default: the tiny test model)")
    p.add_argument("--labels", help="with --model: its labels file (one name per line)")
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--out", default=f".cache/soak-{time.strftime('%Y%m%d-%H%M%S')}")
    args = p.parse_args(argv)
    if not 0 <= args.rtsp <= args.cameras:
        p.error("--rtsp must be between 0 and --cameras")
    if args.model and not args.labels:
        p.error("--model needs --labels")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
