"""`pipeline bench` arguments. Kept apart from pipeline.tools.bench.command so that building the CLI parser imports
nothing heavy (PyAV, numpy, the stages): pipeline/cli.py imports this module for every command."""
from __future__ import annotations

import argparse

# inference includes postprocess; analytics runs at 10 and 50 detections per frame
CLI_STAGES = ("decode", "preprocess", "inference", "e2e-fast", "e2e-realtime", "analytics")
# asked for by name only: inference-under-decode times the model again while the N cameras decode in
# real time (what decoding leaves the model on a shared GPU or CPU), at the cost of one more decode start
OPTIONAL_STAGES = ("inference-under-decode",)
KNOWN_STAGES = CLI_STAGES + OPTIONAL_STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config")
    parser.add_argument("--streams", type=int, default=None, metavar="N",
                        help="camera streams (default: the config's cameras); the cameras are cycled to N")
    parser.add_argument("--seconds", type=float, default=10.0, metavar="S", help="measured window per stage")
    parser.add_argument("--warmup", type=float, default=2.0, metavar="S",
                        help="unmeasured seconds before each decode and end-to-end window")
    parser.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    parser.add_argument("--media", metavar="FILE", help="use this file for every stream instead of the cameras")
    parser.add_argument("--stages", default=",".join(CLI_STAGES),
                        help=f"comma-separated subset of {','.join(KNOWN_STAGES)} (default: all but "
                             f"{','.join(OPTIONAL_STAGES)})")
    parser.add_argument("--find-max", action="store_true",
                        help="search the largest N that holds real time, then run every stage at it")
    parser.add_argument("--max-streams", type=int, default=1024, metavar="N", help="--find-max upper bound")
    parser.add_argument("--confirm-steps", type=int, default=3, metavar="K",
                        help="--find-max: when the full run at N does not hold, run N-1 .. N-K again and "
                             "report the first that holds (default 3; 0: none)")
    parser.add_argument("--max-drop", type=float, default=0.01, metavar="FRACTION",
                        help="real time holds while dropped/decoded frames stay at or below this")
    parser.add_argument("--max-p99", type=float, default=1.0, metavar="S",
                        help="real time holds while p99 capture->publish latency stays at or below this")
    parser.add_argument("--min-rate", type=float, default=0.95, metavar="FRACTION",
                        help="real time holds while published frames/s >= this fraction of the cameras' rate")
    parser.add_argument("--analytics-cameras", type=int, default=100, metavar="N",
                        help="analytics stage: cameras tracked at once (default 100)")
    parser.add_argument("--analytics-shards", type=int, default=1, metavar="N",
                        help="analytics stage: processes the cameras are split over (default 1)")
    parser.add_argument("--detections-per-frame", type=int, default=0, metavar="K",
                        help="end-to-end stages: add K synthetic detections to every frame's (the per-detection "
                             "costs of a real model, whose boxes a random-weight bench model does not find)")
    parser.add_argument("--verbose", action="store_true", help="keep the daemon's per-camera INFO log lines")
