#!/usr/bin/env python3
"""Microseconds of the publish thread per detections message: Publisher.publish_detections_batch on a
real ZeroMQ socket (no subscriber), a batch of 32 frames with N detections each, as the postprocessor
makes them (python floats). Best of 7 rounds of 50 batches; A/B by running it on two checkouts.

    python3 scripts/publish_cost.py [--detections 0 5 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--detections", type=int, nargs="*", default=[0, 5, 20])
    args = ap.parse_args()

    import zmq

    from pipeline.frame import Detection, FrameDetections
    from pipeline.observe.metrics import Metrics
    from pipeline.publish.publisher import Publisher

    context = zmq.Context()
    publisher = Publisher(context, "tcp://127.0.0.1:*", 100000, 0, Metrics())
    try:
        for count in args.detections:
            dets = tuple(Detection("person", 0, 0.5123, (1.5, 2.25, 300.75, 400.5)) for _ in range(count))
            batch = [FrameDetections(f"cam-{i}", i, i / 30, time.time(), 1920, 1080, dets) for i in range(32)]
            best = float("inf")
            for _ in range(7):
                started = time.perf_counter()
                for _ in range(50):
                    publisher.publish_detections_batch(batch)
                best = min(best, (time.perf_counter() - started) / 50 / len(batch))
            print(f"{count} detections a frame: {best * 1e6:.1f} us a message")
    finally:
        publisher.close()
        context.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
