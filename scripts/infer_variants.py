#!/usr/bin/env python3
"""Where inference time goes: the same model and batch run as ONNX Runtime sessions that differ
only in what leaves the device. Speed-only; the numbers it prints are per-call medians.

    python3 scripts/infer_variants.py MODEL.onnx [--device gpu] [--precision fp16] [--batch 32]
                                      [--size 640] [--seconds 4] [--json out.json]

Variants (each on the same random input, already on the device for --device gpu):
    anchors_to_host     the full [B, 4+C, N] output copied to host memory (the old daemon path)
    anchors_on_device   the same output left on the device: the model's own compute ceiling
    candidates_to_host  model + candidate selection (pipeline/infer/candidates.py), [B, 6, K] to host
                        (what the daemon runs now)
It also lists any node ONNX Runtime did not place on the CUDA EP, since one such node in the
candidate graph would move the full output to the host again.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    import onnx
    import onnxruntime as ort

    from pipeline.infer.candidates import append_candidate_selection
    from pipeline.infer.fp16 import fp16_model_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--candidates", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    gpu = args.device == "gpu"
    path = fp16_model_path(args.model) if gpu and args.precision == "fp16" else args.model
    raw_model = onnx.load(str(path))
    variants = {
        "anchors_to_host": (raw_model.SerializeToString(), "cpu"),
        "anchors_on_device": (raw_model.SerializeToString(), "cuda"),
        "candidates_to_host": (append_candidate_selection(raw_model, args.candidates).SerializeToString(), "cpu"),
    }
    if not gpu:
        del variants["anchors_on_device"]
    if gpu:
        ort.preload_dlls() if hasattr(ort, "preload_dlls") else None
    providers = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"] if gpu \
        else ["CPUExecutionProvider"]
    in_dtype = np.float16 if gpu and args.precision == "fp16" else np.float32
    x = np.random.default_rng(0).random((args.batch, 3, args.size, args.size)).astype(in_dtype)
    report: dict[str, object] = {"model": str(args.model), "device": args.device, "precision": args.precision,
                                 "batch": args.batch, "size": args.size, "candidates": args.candidates,
                                 "variants": {}}
    for name, (model_bytes, out_device) in variants.items():
        opts = ort.SessionOptions()
        opts.log_severity_level = 2 if name.startswith("candidates") else 3  # placement warnings
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if gpu and name.startswith("candidates"):
            strict = ort.SessionOptions()
            strict.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
            try:
                ort.InferenceSession(model_bytes, sess_options=strict, providers=providers)
                print(f"{name}: every node runs on the CUDA EP (session.disable_cpu_ep_fallback=1 loads)")
            except Exception as exc:  # noqa: BLE001
                print(f"{name}: some node is not on the CUDA EP: {str(exc).splitlines()[0]}")
        session = ort.InferenceSession(model_bytes, sess_options=opts, providers=providers)
        inp, out = session.get_inputs()[0].name, session.get_outputs()[0].name
        if gpu:
            x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            binding = session.io_binding()
            binding.bind_ortvalue_input(inp, x_dev)

            def call() -> object:
                binding.bind_output(out, device_type=out_device, device_id=0)
                session.run_with_iobinding(binding)
                if out_device == "cpu":
                    return binding.copy_outputs_to_cpu()[0]
                binding.synchronize_outputs()
                return binding.get_outputs()[0]
        else:
            def call() -> object:
                return session.run([out], {inp: x})[0]
        for _ in range(3):
            call()
        times: list[float] = []
        deadline = time.perf_counter() + args.seconds
        while time.perf_counter() < deadline or len(times) < 5:
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        row = {"calls": len(times), "median_ms": round(med * 1000, 3),
               "p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1000, 3),
               "images_per_s": round(args.batch / med, 1)}
        report["variants"][name] = row  # type: ignore[index]
        print(f"{name:20s} b{args.batch} {args.precision}: {row['median_ms']:8.2f} ms/call "
              f"(p90 {row['p90_ms']:.2f}), {row['images_per_s']:8.1f} images/s, {len(times)} calls", flush=True)
        session = binding = None  # free the session before the next variant loads
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
