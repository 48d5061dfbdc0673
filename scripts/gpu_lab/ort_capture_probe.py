#!/usr/bin/env python3
"""Can the daemon capture ONNX Runtime's kernels into a CUDA graph of its own, and launch it without
waiting? (issue 22: ONNX Runtime's own graph replay synchronizes inside every run, so a second batch
can never be queued on the GPU behind the first, and the GPU idles while the inference thread waits
for the interpreter lock between batches.)

    python3 scripts/gpu_lab/ort_capture_probe.py configs/bench-gpu-yolov8n.yaml [--batch 32] [--runs 200]

Builds the config's model the way the daemon does (OnnxRuntimeBackend: fp16, candidates, fixed batch),
with ONNX Runtime's own graphs off and its compute stream ours, then:
  1. warm-up runs, then one run captured with cuStreamBeginCapture(THREAD_LOCAL) on that stream and
     run option disable_synchronize_execution_providers (no sync inside the capture);
  2. the launched graph's output against a plain run's on the same random input (max difference);
  3. throughput, images/s: ONNX Runtime's own graph replay (a second backend, as the daemon runs it
     today), our graph launched and synchronized one at a time, our graph launched two deep (launch
     N+1, then wait for N: the daemon's inference thread would do that), each with an optional
     host-side pause per batch (--pause-ms, default 0 and 2: the wait for the interpreter lock seen
     with 135 cameras) that the two-deep launch should hide.
Prints one JSON object (--json writes it too).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _check(result, call):
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"{call} failed: {err}")
    return values[0] if len(values) == 1 else tuple(values)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--pause-ms", type=float, nargs="*", default=[0.0, 2.0])
    ap.add_argument("--json")
    args = ap.parse_args()

    import onnxruntime as ort
    from cuda.bindings import driver as cu

    from pipeline.config import load_config
    from pipeline.infer import create_backend

    cfg = load_config(args.config)
    plain_model = cfg.model.model_copy(update={"onnxruntime": cfg.model.onnxruntime.model_copy(
        update={"cuda_graph": False, "priority_stream": True})})
    backend = create_backend(plain_model, args.batch, "gpu:0")
    ours = backend._batch_session(args.batch)
    session, stream = ours.session, cu.CUstream(backend._stream.handle)
    inp = ours.input_buffer
    out_meta = session.get_outputs()[0]
    out_shape = [args.batch, *[int(d) for d in out_meta.shape[1:]]]
    out = ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32, "cuda", 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input(session.get_inputs()[0].name, inp)
    binding.bind_ortvalue_output(out_meta.name, out)
    nosync = ort.RunOptions()
    nosync.add_run_config_entry("disable_synchronize_execution_providers", "1")
    report: dict = {"batch": args.batch, "onnxruntime": ort.__version__, "output": out_shape}

    rng = np.random.default_rng(0)
    images = rng.random((args.batch, *ours._item_shape), dtype=np.float32).astype(inp.numpy().dtype)
    inp.update_inplace(images)
    for _ in range(4):
        session.run_with_iobinding(binding)
    expected = out.numpy().copy()

    # 1. capture
    _check(cu.cuStreamBeginCapture(stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
           "cuStreamBeginCapture")
    try:
        session.run_with_iobinding(binding, nosync)
    except Exception as exc:  # noqa: BLE001
        try:
            cu.cuStreamEndCapture(stream)
        finally:
            report["capture"] = f"failed in the run: {str(exc).splitlines()[0]}"
        print(json.dumps(report, indent=1))
        return 1
    graph = _check(cu.cuStreamEndCapture(stream), "cuStreamEndCapture")
    nodes = _check(cu.cuGraphGetNodes(graph, 0), "cuGraphGetNodes")
    graph_exec = _check(cu.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
    report["capture"] = "ok"
    report["graph_nodes"] = int(nodes[1]) if isinstance(nodes, tuple) else None

    # 2. same output
    out.update_inplace(np.zeros(out_shape, np.float32))
    _check(cu.cuGraphLaunch(graph_exec, stream), "cuGraphLaunch")
    _check(cu.cuStreamSynchronize(stream), "cuStreamSynchronize")
    got = out.numpy()
    report["max_abs_diff_vs_plain_run"] = float(np.abs(got - expected).max())

    # 3. throughput
    def timed(step, runs: int) -> float:
        step(), step()
        _check(cu.cuStreamSynchronize(stream), "cuStreamSynchronize")
        t0 = time.perf_counter()
        for _ in range(runs):
            step()
        _check(cu.cuStreamSynchronize(stream), "cuStreamSynchronize")
        return args.batch * runs / (time.perf_counter() - t0)

    events = [_check(cu.cuEventCreate(cu.CUevent_flags.CU_EVENT_DISABLE_TIMING), "cuEventCreate") for _ in range(2)]
    ort_graph_model = cfg.model.model_copy(update={"onnxruntime": cfg.model.onnxruntime.model_copy(
        update={"cuda_graph": True, "priority_stream": True})})
    theirs_backend = create_backend(ort_graph_model, args.batch, "gpu:0")
    theirs = theirs_backend._batch_session(args.batch)
    theirs.warm_up()  # captures ONNX Runtime's own graph for this thread

    results = {}
    for pause_ms in args.pause_ms:
        pause = pause_ms / 1000.0

        def host_pause() -> None:
            if pause:
                end = time.perf_counter() + pause
                while time.perf_counter() < end:
                    pass

        def ort_replay() -> None:
            theirs.session.run_with_iobinding(theirs._graph_binding)
            host_pause()

        def ours_one_deep() -> None:
            _check(cu.cuGraphLaunch(graph_exec, stream), "cuGraphLaunch")
            _check(cu.cuStreamSynchronize(stream), "cuStreamSynchronize")
            host_pause()

        turn = [0]

        def ours_two_deep() -> None:
            i = turn[0] = turn[0] + 1
            _check(cu.cuGraphLaunch(graph_exec, stream), "cuGraphLaunch")
            _check(cu.cuEventRecord(events[i % 2], stream), "cuEventRecord")
            _check(cu.cuEventSynchronize(events[(i - 1) % 2]), "cuEventSynchronize")  # the batch before
            host_pause()

        results[f"pause_{pause_ms:g}ms"] = {
            "ort_graph_replay": round(timed(ort_replay, args.runs), 1),
            "our_graph_one_deep": round(timed(ours_one_deep, args.runs), 1),
            "our_graph_two_deep": round(timed(ours_two_deep, args.runs), 1),
        }
    report["images_per_s"] = results
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
