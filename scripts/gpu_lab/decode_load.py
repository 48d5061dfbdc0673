#!/usr/bin/env python3
"""A decode-only load: N streams of one clip decoded the way the daemon decodes them (decode.workers
processes, NVDEC), paced at the cameras' real rate (or as fast as they go with --fast), for S
seconds after every camera has its first frame; then one line with the frames/s reached.

    python3 scripts/gpu_lab/decode_load.py CFG --media CLIP --streams 135 --seconds 30 [--fast] [--json out.json]

What it is for (issue 22): how much GPU time decoding takes from inference. gpu_bench.sh's
`decode_cost` step runs `pipeline bench --stages inference` alone and while this runs, per codec,
so the difference is what N real-time cameras of that codec cost the model's throughput.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import load_config
    from pipeline.tools.bench.probe import GpuMemoryReader
    from pipeline.tools.bench.stages import Window, measure_decode
    from pipeline.tools.bench.streams import bench_cameras

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--media", type=Path, required=True)
    ap.add_argument("--streams", type=int, default=135)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--fast", action="store_true", help="decode as fast as possible instead of in real time")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    try:
        cameras = bench_cameras(cfg, args.streams, realtime=not args.fast, media=args.media)
    except ValueError as exc:  # a missing clip, --streams 0: one line, not a traceback
        print(f"decode_load: {exc}", file=sys.stderr)
        return 2
    print(f"decode_load: {args.streams} x {args.media.name}, {'as fast as possible' if args.fast else 'real time'}, "
          f"{cfg.decode.workers or 0} decode worker(s); measuring {args.seconds:g} s", flush=True)
    result, _ = measure_decode(cameras, cfg, Window(args.warmup, args.seconds), 0, GpuMemoryReader(cfg.decode.gpu_id))
    print(f"decode_load: {result.fps:.1f} frames/s ({result.fps / args.streams:.2f} per stream) over "
          f"{result.seconds:g} s" + (f"; error: {result.error}" if result.error else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"media": str(args.media), "streams": args.streams, "realtime": not args.fast,
                                         "seconds": result.seconds, "frames": result.frames, "fps": result.fps,
                                         "error": result.error}, indent=2) + "\n")
    return 0 if result.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
