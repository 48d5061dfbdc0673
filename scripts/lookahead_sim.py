#!/usr/bin/env python3
"""The inference stage one batch behind (app/lookahead.py), checked on a CPU box: the real CPU backend
wrapped in a simulated GPU (a device thread that takes GPU_MS a batch, in order, letting go of the
interpreter lock as a GPU wait does), many synthetic cameras, the real daemon through `pipeline bench`.
A stand-in for the GPU only; everything else is the product.

    python3 scripts/lookahead_sim.py --mode ahead|sync|none [--streams 135] [--gpu-ms 7] [--seconds 8]

ahead: submit() returns before the batch has run (the stage queues the next one first);
sync: submit() waits inside (one batch at a time, as without queue ahead); none: the CPU backend
alone (the daemon's host side with many cameras, e.g. --streams 270 for overload). Prints the bench's row.
"""
from __future__ import annotations

import argparse
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = """cameras:
  - {{id: cam, url: 'synthetic:64x48@30'}}
model: {{path: {model}, labels: [x], input_size: 64, score_threshold: 0.99}}
decode: {{device: cpu}}
preprocess: {{device: cpu, num_threads: 1}}
scheduler: {{max_batch: 32, max_wait_ms: 10, queue_per_camera: 4}}
publish: {{bind: "tcp://127.0.0.1:5599", high_water_mark: 100000}}
metrics: {{bind: null}}
"""


class SimulatedGpu:
    """The wrapped backend, its batches run in order by one device thread that sleeps `gpu_s` first."""

    def __init__(self, inner, gpu_s: float, ahead: bool) -> None:
        self._inner, self._gpu_s, self._ahead = inner, gpu_s, ahead
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._device, daemon=True, name="simulated-gpu").start()

    def _device(self) -> None:
        while True:
            batch, done, out = self._jobs.get()
            time.sleep(self._gpu_s)
            out.append(self._inner.infer(batch))
            done.set()

    def submit(self, batch):
        from pipeline.infer.base import Completed, Queued

        done, out = threading.Event(), []
        self._jobs.put((batch, done, out))
        if not self._ahead:
            done.wait()
            return Completed(out[0])
        return Queued(lambda: (done.wait(), out[0])[1])

    def infer(self, batch):
        return self.submit(batch).result()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["ahead", "sync", "none"], required=True)
    ap.add_argument("--streams", type=int, default=135)
    ap.add_argument("--gpu-ms", type=float, default=7.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()

    import pipeline.app.daemon as daemon
    from pipeline.cli import main as cli_main
    from tests.support.tiny_model import build_tiny_yolo_onnx

    real = daemon.create_backend
    if args.mode != "none":
        daemon.create_backend = lambda *a, **k: SimulatedGpu(real(*a, **k), args.gpu_ms / 1000.0,
                                                             args.mode == "ahead")
    with tempfile.TemporaryDirectory(prefix="lookahead-sim-") as tmp:
        model = build_tiny_yolo_onnx(Path(tmp) / "tiny.onnx", num_classes=1, input_size=64)
        config = Path(tmp) / "sim.yaml"
        config.write_text(CONFIG.format(model=model))
        return cli_main(["bench", str(config), "--streams", str(args.streams), "--stages", "e2e-realtime",
                         "--seconds", str(args.seconds), "--warmup", "3"])


if __name__ == "__main__":
    sys.exit(main())
