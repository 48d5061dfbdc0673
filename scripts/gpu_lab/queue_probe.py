#!/usr/bin/env python3
"""`pipeline bench` with the daemon's queues printed once a second (stderr), to see where frames wait
in a run that falls behind; --publish-batches sets how many detections batches may wait for the
publisher (app/publish_queue.py; 256 is about the single 264-item queue before it); --profile records
this process (the daemon's threads) with py-spy, only while a thread holds the interpreter lock, from
--profile-after seconds after the daemon started for --profile-seconds (summarise it with
scripts/gpu_lab/profile_summary.py).

    python3 scripts/gpu_lab/queue_probe.py [--publish-batches N] [--profile OUT.txt] -- CONFIG --streams 135 --stages e2e-realtime ...
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--publish-batches", type=int, default=None)
    ap.add_argument("--profile", type=Path, default=None, help="py-spy raw output (needs py-spy on PATH or in PYSPY)")
    ap.add_argument("--profile-after", type=float, default=14.0, help="seconds after the daemon starts (the bench's "
                    "measured window begins once every camera has published, plus its warm-up)")
    ap.add_argument("--profile-seconds", type=int, default=6)
    ap.add_argument("bench", nargs=argparse.REMAINDER, help="pipeline bench arguments (after --)")
    args = ap.parse_args()
    import pipeline.app.daemon as daemon
    from pipeline.cli import main as cli_main

    if args.publish_batches is not None:
        daemon.PUBLISH_BATCHES = args.publish_batches
    start = daemon.Daemon.start

    def start_and_sample(self: daemon.Daemon) -> None:
        start(self)
        t0 = time.monotonic()

        def sample() -> None:
            while True:
                time.sleep(1.0)
                print(f"queues {time.monotonic() - t0:5.1f}s: scheduler {self.scheduler._queued} infer {self._infer_q.qsize()} "
                      f"postprocess {self._postprocess_q.qsize()} publish {self._publish_q.qsize()}", file=sys.stderr, flush=True)
        threading.Thread(target=sample, name="queue-probe", daemon=True).start()
        if args.profile is not None:
            threading.Thread(target=profile, name="queue-probe-py-spy", daemon=True).start()

    def profile() -> None:
        time.sleep(args.profile_after)
        beside = Path(sys.executable).with_name("py-spy")  # a virtual environment's
        spy = (os.environ.get("PYSPY") or shutil.which("py-spy") or (str(beside) if beside.exists() else None)
               or "/tmp/gpu-site/bin/py-spy")  # scripts/gpu_lab/stage_lean.sh puts it there
        print(f"py-spy: recording {args.profile_seconds:g} s into {args.profile}", file=sys.stderr, flush=True)
        if not Path(spy).exists():
            print(f"py-spy: not found ({spy}); set PYSPY", file=sys.stderr, flush=True)
            return
        done = subprocess.run([spy, "record", "--nonblocking", "--gil", "--threads", "-r", "200", "-d",
                               str(max(1, round(args.profile_seconds))), "-f", "raw", "-o", str(args.profile), "--pid", str(os.getpid())],
                              capture_output=True, text=True)
        print(f"py-spy: exit {done.returncode} {done.stderr.strip()[-600:]}", file=sys.stderr, flush=True)

    daemon.Daemon.start = start_and_sample  # type: ignore[method-assign]
    bench = args.bench[1:] if args.bench[:1] == ["--"] else args.bench
    return cli_main(["bench", *bench])


if __name__ == "__main__":
    sys.exit(main())
