"""Frame preparation alone on the GPU (issue 22): GPU time per 1080p frame, batch 32, for the fused
kernel on NV12 and on RGB input, and the DALI letterbox on RGB for comparison.

    python3 scripts/gpu_lab/prep_bench.py [--batch 32] [--size 640] [--dtype fp16] [--calls 300] [--json OUT]

Inputs: 4 sets of `batch` distinct 1920x1080 pictures (smooth random content plus noise, never
zeros), so a batch's 100 MB of NV12 are more than the H200's 60 MB L2 and the calls rotate over them.
fused: the preprocessor's own CUDA events around each launch (kernel time only) and the wall time
per call (parameters copy, launch, synchronise: what the batch thread spends). DALI: wall time per
call only (its pipeline runs on its own stream; the run is host-synchronous). The bandwidth floor:
one read of the NV12 picture (1.5 bytes a pixel) and one write of the 3xSxS tensor.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.frame import Frame, FrameBatch  # noqa: E402
from pipeline.gpu.memory import DeviceBufferPool, upload  # noqa: E402
from pipeline.gpu.nv12 import upload_nv12  # noqa: E402
from pipeline.preprocess import create_preprocessor  # noqa: E402
from pipeline.preprocess.reference import letterbox_reference, nv12_to_rgb_reference, rgb_to_nv12_reference  # noqa: E402

W, H = 1920, 1080


def picture(seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (H // 24, W // 24, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_LINEAR)
    return np.clip(image.astype(np.int16) + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)


def timed(pre, batches, calls: int) -> dict:
    for b in batches:  # warm-up: compile/build, first allocations
        pre(b)
    if hasattr(pre, "gpu_seconds"):
        pre.gpu_seconds, pre.gpu_frames = 0.0, 0
    walls = []
    for i in range(calls):
        t0 = time.perf_counter()
        out = pre(batches[i % len(batches)])
        walls.append(time.perf_counter() - t0)
        del out
    n = len(batches[0].frames)
    result = {"calls": calls, "batch": n, "wall_us_per_frame_median": 1e6 * statistics.median(walls) / n,
              "wall_us_per_frame_p90": 1e6 * float(np.percentile(walls, 90)) / n}
    if getattr(pre, "gpu_frames", 0):
        result["gpu_us_per_frame"] = 1e6 * pre.gpu_seconds / pre.gpu_frames
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--sets", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    dtype = np.float16 if args.dtype == "fp16" else np.float32
    pool = DeviceBufferPool(0)
    t0 = time.time()
    distinct = 8  # pictures of content; every frame of every set still has its own device buffer
    rgbs = [picture(i) for i in range(distinct)]
    nv12s = [rgb_to_nv12_reference(im, "bt709", False) for im in rgbs]
    print(f"pictures made in {time.time() - t0:.1f} s", flush=True)
    nv12_sets, rgb_sets = [], []
    for s in range(args.sets):
        order = [(i + 3 * s) % distinct for i in range(args.batch)]
        nv12_sets.append(FrameBatch(tuple(
            Frame(f"c{i}", s, None, 0.0, W, H, upload_nv12(pool, nv12s[j], W, H, "bt709", False))
            for i, j in enumerate(order)), 0.0, 0.0))
        rgb_sets.append(FrameBatch(tuple(
            Frame(f"c{i}", s, None, 0.0, W, H, upload(pool, rgbs[j])) for i, j in enumerate(order)), 0.0, 0.0))
    results: dict = {"batch": args.batch, "size": args.size, "dtype": args.dtype, "source": f"{W}x{H}"}
    with create_preprocessor("gpu", args.size, dtype, args.batch, kernel="fused") as fused:
        # correctness on the measured data: frame 0 against the numpy reference
        out = fused(nv12_sets[0]).tensor.to_host()[0].astype(np.float64)
        j0 = 0
        ref = letterbox_reference(nv12_to_rgb_reference(nv12s[j0], W, H, "bt709", False), args.size)[0]
        results["fused_nv12_vs_reference_max_grey_levels"] = float(np.abs(out - ref).max() * 255)
        results["fused_nv12"] = timed(fused, nv12_sets, args.calls)
        results["fused_rgb"] = timed(fused, rgb_sets, args.calls)
    try:
        with create_preprocessor("gpu", args.size, dtype, args.batch, 4, kernel="dali") as dali:
            results["dali_rgb"] = timed(dali, rgb_sets, max(50, args.calls // 3))
    except Exception as exc:  # noqa: BLE001 - DALI missing: the fused figures stand alone
        results["dali_rgb"] = {"error": str(exc).splitlines()[0]}
    out_bytes = 3 * args.size * args.size * np.dtype(dtype).itemsize
    floor_bytes = W * H * 3 // 2 + out_bytes
    results["bytes_per_frame_floor"] = floor_bytes
    gpu_us = results["fused_nv12"].get("gpu_us_per_frame")
    if gpu_us:
        results["fused_nv12_achieved_GBps"] = floor_bytes / (gpu_us * 1e-6) / 1e9
    print(f"{'variant':<12} {'GPU us/frame':>13} {'wall us/frame (median)':>23}")
    for name in ("fused_nv12", "fused_rgb", "dali_rgb"):
        r = results[name]
        if "error" in r:
            print(f"{name:<12} {r['error']}")
            continue
        gpu = f"{r['gpu_us_per_frame']:.2f}" if "gpu_us_per_frame" in r else "-"
        print(f"{name:<12} {gpu:>13} {r['wall_us_per_frame_median']:>23.2f}")
    print(f"fused NV12 vs numpy reference, frame 0: max {results['fused_nv12_vs_reference_max_grey_levels']:.3f} grey levels;"
          f" floor {floor_bytes / 1e6:.2f} MB/frame; achieved {results.get('fused_nv12_achieved_GBps', 0):.0f} GB/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
