"""Many cameras under a real systemd-style watchdog: do the pings hold their interval?

    python3 scripts/watchdog_bench.py --cameras 1000 --fps 1 --watchdog-s 10 --duration 60 --out .cache/watchdog-1000

Starts the real daemon (`python -m pipeline run`) with N synthetic cameras and the tiny ONNX model,
NOTIFY_SOCKET bound here (an abstract unix datagram socket, as systemd binds it) and WATCHDOG_USEC
set. It records every datagram (READY, STATUS, WATCHDOG=1, STOPPING) with its arrival time, then
sends SIGTERM and times the exit. The daemon pings every WatchdogSec/4 while frames move; systemd
would kill it after WatchdogSec without one.

Checks: READY arrives; after READY the longest gap between pings stays under the watchdog period
(WatchdogSec; --strict: under half of it); SIGTERM exits with code 0 within 5 s. Writes
summary.json (settings, ping gaps, status updates, SIGTERM time, verdict) and daemon.log into --out.
Exit code 0 when every check passed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from tests.support.notify import NotifyListener  # noqa: E402
from tests.support.reliability import rss_bytes, tiny_model_section  # noqa: E402

SIGTERM_BUDGET_S = 5.0


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=1000)
    ap.add_argument("--fps", type=float, default=1.0, help="frames per second per synthetic camera")
    ap.add_argument("--watchdog-s", type=float, default=10.0, help="WATCHDOG_USEC, in seconds")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds after READY before SIGTERM")
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument("--strict", action="store_true", help="ping gaps must stay under WatchdogSec/2")
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "watchdog-bench")
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)

    cams = [{"id": f"cam{i:04d}", "url": f"synthetic:32x24@{args.fps:g}"} for i in range(args.cameras)]
    doc = {"cameras": cams, "model": tiny_model_section(args.out, input_size=32),
           "publish": {"bind": "tcp://127.0.0.1:*"}, "metrics": {"bind": None},
           "scheduler": {"max_batch": 64, "max_wait_ms": 50, "queue_per_camera": 2}}
    config = args.out / "config.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))

    listener = NotifyListener("pipeline-watchdog-bench")
    env = {**os.environ, "NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": str(int(args.watchdog_s * 1e6))}
    env.pop("WATCHDOG_PID", None)
    log_path = args.out / "daemon.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(config), "--status-interval", "0"],
                                cwd=REPO, env=env, stderr=log, stdout=subprocess.DEVNULL)
        try:
            while not listener.times("READY") and proc.poll() is None and time.monotonic() - started < args.ready_timeout:
                time.sleep(0.2)
            ready = listener.times("READY")
            if not ready:
                print(f"no READY (exit code {proc.poll()}, waited {time.monotonic() - started:.0f} s); see {log_path}",
                      file=sys.stderr)
                return 1
            ready_at = ready[0]
            rss = []
            while time.monotonic() - ready_at < args.duration and proc.poll() is None:
                time.sleep(1.0)
                rss.append(rss_bytes(proc.pid))
            term_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            stop_s = time.monotonic() - term_at
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            listener.close()

    pings = [t for t in listener.times("WATCHDOG") if ready_at <= t <= term_at]
    edges = [ready_at, *pings, term_at]
    gaps = [b - a for a, b in zip(edges, edges[1:])]
    limit = args.watchdog_s / 2 if args.strict else args.watchdog_s
    statuses = [m["STATUS"] for t, m in listener.messages if "STATUS" in m and ready_at <= t <= term_at]
    checks = {
        "ready": True,
        "pings_within_limit": bool(pings) and max(gaps) < limit,
        "sigterm_within_5s": code == 0 and stop_s <= SIGTERM_BUDGET_S,
    }
    summary = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": git_commit(),
        "machine": f"{platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                   f"Python {platform.python_version()}",
        "cameras": args.cameras, "fps_per_camera": args.fps, "watchdog_s": args.watchdog_s,
        "ping_target_s": args.watchdog_s / 4, "duration_s": args.duration,
        "seconds_to_ready": round(ready_at - started, 1),
        "pings": len(pings), "max_ping_gap_s": round(max(gaps), 2) if gaps else None,
        "median_ping_gap_s": round(statistics.median(gaps), 2) if gaps else None,
        "status_updates": len(statuses), "last_status": statuses[-1] if statuses else None,
        "rss_mib_first_last": [round(rss[0] / 2**20), round(rss[-1] / 2**20)] if rss else None,
        "sigterm_exit_code": code, "sigterm_s": round(stop_s, 2),
        "checks": checks, "passed": all(checks.values()),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
