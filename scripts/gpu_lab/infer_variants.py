#!/usr/bin/env python3
"""Where inference time goes: the same model and batch run as ONNX Runtime sessions that differ
in what leaves the device, in the candidate graph and in CUDA EP options. Speed-only; the numbers
it prints are per-call medians.

    python3 scripts/gpu_lab/infer_variants.py MODEL.onnx [--device gpu] [--precision fp16] [--batch 32]
                                      [--size 640] [--seconds 4] [--variants a,b,...] [--json out.json]

Variants (each on the same random input, already on the device for --device gpu):
    anchors_to_host     the full [B, 4+C, N] output copied to host memory (the old daemon path)
    anchors_on_device   the same output left on the device: the model's own compute ceiling
    candidates_to_host  model + the first candidate selection (TopK k=1 over the classes, cast
                        first), [B, 6, K] to host: what the daemon ran up to step 4
  GPU only, each a change against candidates_to_host (docs/BENCHMARKS.md, step 5):
    anchors_nhwc        anchors_on_device with the CUDA EP option prefer_nhwc=1
    candidates_argmax   ArgMax + GatherElements instead of TopK k=1 over the classes
    candidates_cast_last  select in float16, cast only [B, 6, K] to float32
    candidates_k300     K = 300 instead of --candidates
    candidates_static   the batch dimension fixed in the model (as one session per batch size allows)
    candidates_graph    static + CUDA graph (enable_cuda_graph=1; input and output at fixed addresses)
    candidates_nhwc     prefer_nhwc=1
    candidates_all      argmax + cast_last + static + graph + nhwc (the daemon since step 5 runs
                        argmax + cast_last + static + graph, nhwc per model.onnxruntime.prefer_nhwc)
It also lists any node ONNX Runtime did not place on the CUDA EP, since one such node in the
candidate graph would move the full output to the host again.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


GPU_VARIANTS = ["anchors_nhwc", "candidates_argmax", "candidates_cast_last", "candidates_k300",
                "candidates_static", "candidates_graph", "candidates_nhwc", "candidates_all"]


@dataclass(frozen=True)
class Variant:
    model: bytes
    out_device: str  # "cpu": ORT copies the output to host memory; "cuda": it stays on the device
    provider_options: dict[str, str] = field(default_factory=dict)
    cuda_graph: bool = False


def fixed_batch(model: Any, batch: int) -> Any:
    """A copy of `model` whose input batch dimension is `batch` (ORT can then fold shape ops)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    return out


def build_variants(raw_model: Any, args: argparse.Namespace, gpu: bool) -> dict[str, Variant]:
    from pipeline.infer.candidates import append_candidate_selection

    def candidates(k: int = args.candidates, static: bool = False, **graph: Any) -> bytes:
        base = fixed_batch(raw_model, args.batch) if static else raw_model
        return append_candidate_selection(base, k, **graph).SerializeToString()

    variants = {
        "anchors_to_host": Variant(raw_model.SerializeToString(), "cpu"),
        "anchors_on_device": Variant(raw_model.SerializeToString(), "cuda"),
        "candidates_to_host": Variant(candidates(class_max="topk", cast_last=False), "cpu"),
    }
    if not gpu:
        del variants["anchors_on_device"]
        return variants
    nhwc = {"prefer_nhwc": "1"}
    variants.update({
        "anchors_nhwc": Variant(raw_model.SerializeToString(), "cuda", nhwc),
        "candidates_argmax": Variant(candidates(class_max="argmax", cast_last=False), "cpu"),
        "candidates_cast_last": Variant(candidates(class_max="topk", cast_last=True), "cpu"),
        "candidates_k300": Variant(candidates(k=300, class_max="topk", cast_last=False), "cpu"),
        "candidates_static": Variant(candidates(static=True, class_max="topk", cast_last=False), "cpu"),
        "candidates_graph": Variant(candidates(static=True, class_max="topk", cast_last=False), "cuda",
                                    {"enable_cuda_graph": "1"}, True),
        "candidates_nhwc": Variant(candidates(class_max="topk", cast_last=False), "cpu", nhwc),
        "candidates_all": Variant(candidates(static=True, class_max="argmax", cast_last=True), "cuda",
                                  {"enable_cuda_graph": "1", **nhwc}, True),
    })
    return variants


def session_call(ort: Any, variant: Variant, x: np.ndarray, gpu: bool, providers: list[Any],
                 name: str) -> tuple[Any, Callable[[], object]]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 2 if name.startswith("candidates") else 3  # placement warnings
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if gpu:
        providers = [("CUDAExecutionProvider", {"device_id": 0, **variant.provider_options}),
                     "CPUExecutionProvider"]
    if gpu and name.startswith("candidates"):
        strict = ort.SessionOptions()
        strict.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        try:
            ort.InferenceSession(variant.model, sess_options=strict, providers=providers[:1])
            print(f"{name}: every node runs on the CUDA EP (session.disable_cpu_ep_fallback=1 loads)")
        except Exception as exc:  # noqa: BLE001
            print(f"{name}: some node is not on the CUDA EP: {str(exc).splitlines()[0]}")
    session = ort.InferenceSession(variant.model, sess_options=opts, providers=providers)
    inp, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    if not gpu:
        return session, lambda: session.run([out], {inp: x})[0]
    x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input(inp, x_dev)
    if variant.cuda_graph:
        # a CUDA graph replays fixed addresses: the output is bound once, to a buffer of ours
        shape = [d if isinstance(d, int) else int(x.shape[0]) for d in session.get_outputs()[0].shape]
        y_dev = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, "cuda", 0)
        binding.bind_ortvalue_output(out, y_dev)

        def call_graph() -> object:
            session.run_with_iobinding(binding)
            return y_dev.numpy()  # the copy to the host waits for the replay
        return (session, x_dev, y_dev), call_graph

    def call() -> object:
        binding.bind_output(out, device_type=variant.out_device, device_id=0)
        session.run_with_iobinding(binding)
        if variant.out_device == "cpu":
            return binding.copy_outputs_to_cpu()[0]
        binding.synchronize_outputs()
        return binding.get_outputs()[0]
    return (session, x_dev), call


def main(argv: list[str] | None = None) -> int:
    import onnx
    import onnxruntime as ort

    from pipeline.infer.onnxruntime.fp16 import fp16_model_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--candidates", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--variants", default="", help="comma-separated names (default: all for the device)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    gpu = args.device == "gpu"
    path = fp16_model_path(args.model) if gpu and args.precision == "fp16" else args.model
    raw_model = onnx.load(str(path))
    variants = build_variants(raw_model, args, gpu)
    if args.variants:
        wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = [v for v in wanted if v not in variants]
        if unknown:
            ap.error(f"unknown variants {unknown}; known: {', '.join(variants)}")
        variants = {name: variants[name] for name in wanted}
    if gpu:
        ort.preload_dlls() if hasattr(ort, "preload_dlls") else None
    providers = ["CPUExecutionProvider"]
    in_dtype = np.float16 if gpu and args.precision == "fp16" else np.float32
    x = np.random.default_rng(0).random((args.batch, 3, args.size, args.size)).astype(in_dtype)
    report: dict[str, Any] = {"model": str(args.model), "device": args.device, "precision": args.precision,
                              "batch": args.batch, "size": args.size, "candidates": args.candidates,
                              "ort": ort.__version__, "variants": {}}
    reference = None
    for name, variant in variants.items():
        try:
            keep, call = session_call(ort, variant, x, gpu, providers, name)
            first = call()
            for _ in range(3):
                call()
        except Exception as exc:  # noqa: BLE001 - one variant failing must not hide the others
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"{name:20s} failed: {line}", flush=True)
            report["variants"][name] = {"error": line}
            continue
        times: list[float] = []
        deadline = time.perf_counter() + args.seconds
        while time.perf_counter() < deadline or len(times) < 5:
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        row: dict[str, Any] = {"calls": len(times), "median_ms": round(med * 1000, 3),
                               "p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1000, 3),
                               "images_per_s": round(args.batch / med, 1)}
        if name.startswith("candidates") and "k300" not in name:
            got = np.asarray(first, dtype=np.float32)
            if reference is None:
                reference = got
            # same candidates as the first candidate variant (scores to fp16 rounding, order on ties aside)
            row["max_score_diff_vs_first"] = float(np.abs(np.sort(got[:, 4], axis=1)
                                                          - np.sort(reference[:, 4], axis=1)).max())
        report["variants"][name] = row
        print(f"{name:20s} b{args.batch} {args.precision}: {row['median_ms']:8.2f} ms/call "
              f"(p90 {row['p90_ms']:.2f}), {row['images_per_s']:8.1f} images/s, {len(times)} calls"
              + (f", score diff {row['max_score_diff_vs_first']:.2g}" if "max_score_diff_vs_first" in row else ""),
              flush=True)
        keep = call = None  # free the session before the next variant loads
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
