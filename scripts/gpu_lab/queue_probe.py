#!/usr/bin/env python3
"""`pipeline bench` with the daemon's queues printed once a second (stderr), to see where frames wait
in a run that falls behind; --publish-batches sets how many detections batches may wait for the
publisher (app/publish_queue.py; 256 is about the single 264-item queue before it).

    python3 scripts/gpu_lab/queue_probe.py [--publish-batches N] -- CONFIG --streams 135 --stages e2e-realtime ...
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--publish-batches", type=int, default=None)
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

    daemon.Daemon.start = start_and_sample  # type: ignore[method-assign]
    bench = args.bench[1:] if args.bench[:1] == ["--"] else args.bench
    return cli_main(["bench", *bench])


if __name__ == "__main__":
    sys.exit(main())
