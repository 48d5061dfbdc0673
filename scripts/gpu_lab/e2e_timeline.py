#!/usr/bin/env python3
"""Timeline of one end-to-end bench run: what every stage thread did, half a second at a time.

    python3 scripts/gpu_lab/e2e_timeline.py CONFIG [--streams 16] [--seconds 8] [--realtime]
                                    [--variant default|ctx0|cpu-decode] [--switch-interval S]
                                    [--json out.json]

Runs `pipeline bench CONFIG --stages e2e-fast` (or e2e-realtime) in this process with timers
wrapped around the stage calls (no product code changes):
    decode   each NVDEC Decode() call (ms, pictures returned) and each decoder creation
    pre      each letterbox batch (DALI or the fused kernel)
    infer    each ONNX Runtime device call (ms, images, padded batch), and within it the copy into
             the CUDA graph's input buffer and the candidates' copy to the host; with
             model.onnxruntime.queue_ahead (no such calls) each step of the inference stage instead
             (queue one batch, finish the one before), and "wait ms": its wait for the GPU per step
    post     each postprocess batch
    gil      a probe thread sleeping 0.5 ms: how late it wakes up is how long it waited for the GIL
and prints one row per 0.5 s window, so a stall shows where it happens, then one summary line over
the steady windows (how busy each stage thread was, images per inference call, GIL lateness;
with model.instances N the infer threads' busy times add up, to at most N x 100 %).

Variants (for A/B): ctx0 lets PyNvVideoCodec pick its own CUDA context (cudacontext=0, the old
behaviour); cpu-decode decodes with FFmpeg on the CPU instead of NVDEC. --switch-interval sets
sys.setswitchinterval (Python's default is 0.005 s) for the whole run.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

EVENTS: list[tuple[str, float, float, int]] = []  # (kind, start, end, count)
_lock = threading.Lock()


def record(kind: str, start: float, end: float, count: int) -> None:
    with _lock:
        EVENTS.append((kind, start, end, count))


def wrap(owner: type, name: str, kind: str, count_of) -> None:
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        record(kind, t0, time.perf_counter(), count_of(args, out))
        return out

    setattr(owner, name, timed)


def gil_probe(stop: threading.Event) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        time.sleep(0.0005)
        t1 = time.perf_counter()
        record("gil", t0, t1, int((t1 - t0 - 0.0005) * 1e6))  # microseconds late


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--realtime", action="store_true")
    ap.add_argument("--variant", choices=["default", "ctx0", "cpu-decode"], default="default")
    ap.add_argument("--switch-interval", type=float, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)

    from pipeline.infer.onnxruntime.backend import OnnxRuntimeBackend
    from pipeline.infer.onnxruntime import gpu_sessions
    from pipeline.postprocess.detections import DetectionPostprocessor
    from pipeline.preprocess.fused import FusedLetterbox
    from pipeline.sources import nvdec

    from pipeline.gpu import device_buffer

    from pipeline.app.lookahead import LookaheadInfer

    wrap(OnnxRuntimeBackend, "_run_chunk", "infer", lambda a, out: a[2])
    wrap(LookaheadInfer, "__call__", "infer_step", lambda a, out: sum(len(r.frames) for r in out))
    wrap(gpu_sessions.QueuedRun, "wait", "infer_wait", lambda a, out: 1)
    wrap(device_buffer, "copy_device_to_device", "infer_copy", lambda a, out: 1)  # into the graph's input
    wrap(gpu_sessions, "device_to_host", "infer_d2h", lambda a, out: 1)  # candidates to the host
    try:  # the DALI reference path, where DALI is installed
        from pipeline.preprocess.dali import DaliLetterbox
        wrap(DaliLetterbox, "_letterbox", "pre", lambda a, out: len(a[1]))
    except ImportError:
        pass
    wrap(FusedLetterbox, "_letterbox", "pre", lambda a, out: len(a[1]))
    wrap(DetectionPostprocessor, "__call__", "post", lambda a, out: len(out))
    wrap(nvdec._NvdecSession, "_submit", "decode", lambda a, out: len(out))
    wrap(nvdec._NvdecSession, "__init__", "decoder_create", lambda a, out: 1)
    if args.variant == "ctx0":
        init = nvdec._NvdecRuntime.__init__

        def own_context(self, gpu_id):
            init(self, gpu_id)
            self.context = 0

        nvdec._NvdecRuntime.__init__ = own_context
    config = args.config
    if args.variant == "cpu-decode":
        text = Path(config).read_text().replace("decode:     {device: gpu, gpu_id: 0}", "decode:     {device: cpu}")
        config = str(Path(config).with_name("_timeline_cpu_decode.yaml"))
        Path(config).write_text(text)

    stop = threading.Event()
    threading.Thread(target=gil_probe, args=(stop,), daemon=True, name="gil-probe").start()
    from pipeline.cli import main as cli_main
    t_start = time.perf_counter()
    stage = "e2e-realtime" if args.realtime else "e2e-fast"
    rc = cli_main(["bench", config, "--streams", str(args.streams), "--seconds", str(args.seconds),
                   "--warmup", "3" if args.realtime else "2", "--stages", stage])
    stop.set()
    if args.variant == "cpu-decode":
        Path(config).unlink()

    with _lock:
        events = list(EVENTS)
    if not any(kind == "infer" for kind, *_ in events):  # queue ahead: the stage's steps are the calls
        events = [("infer" if kind == "infer_step" else kind, t0, t1, n) for kind, t0, t1, n in events]
    buckets: dict[int, dict[str, list]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for kind, t0, t1, n in events:
        buckets[int((t0 - t_start) / 0.5)][kind].append((t1 - t0, n))
    print(f"\nvariant {args.variant}: per 0.5 s window since start (ms = per call; gil = probe lateness)")
    print(f"{'t s':>5} {'dec calls':>9} {'dec pics':>8} {'dec ms p50/max':>15} {'pre n':>6} {'pre ms':>7} "
          f"{'inf calls':>9} {'inf imgs':>8} {'inf ms mean/max':>15} {'wait ms':>7} {'post ms':>7} {'gil us p99/max':>15} "
          f"{'new dec':>7}")
    for b in sorted(buckets):
        w = buckets[b]

        def ms(kind: str) -> list[float]:
            return sorted(d * 1000 for d, _ in w.get(kind, []))

        dec, inf, pre, post, wait = ms("decode"), ms("infer"), ms("pre"), ms("post"), ms("infer_wait")
        gil = sorted(n for _, n in w.get("gil", []))
        print(f"{b * 0.5:5.1f} {len(dec):9d} {sum(n for _, n in w.get('decode', [])):8d} "
              f"{(f'{dec[len(dec) // 2]:.1f}/{dec[-1]:.0f}' if dec else '-'):>15} "
              f"{sum(n for _, n in w.get('pre', [])):6d} {(f'{sum(pre) / len(pre):.1f}' if pre else '-'):>7} "
              f"{len(inf):9d} {sum(n for _, n in w.get('infer', [])):8d} "
              f"{(f'{sum(inf) / len(inf):.1f}/{inf[-1]:.0f}' if inf else '-'):>15} "
              f"{(f'{sum(wait) / len(wait):.1f}' if wait else '-'):>7} "
              f"{(f'{sum(post) / len(post):.1f}' if post else '-'):>7} "
              f"{(f'{gil[int(0.99 * (len(gil) - 1))]}/{gil[-1]}' if gil else '-'):>15} {len(w.get('decoder_create', [])):7d}")
    print(steady_summary(buckets, args))
    if args.json:
        args.json.write_text(json.dumps({"variant": args.variant, "switch_interval": sys.getswitchinterval(),
                                         "t_start": t_start, "events": events}))
    return rc


def steady_summary(buckets: dict[int, dict[str, list]], args: argparse.Namespace) -> str:
    """One line over the windows where inference ran, the first and last of them left out."""
    busy = sorted(b for b, w in buckets.items() if w.get("infer"))[1:-1]
    if not busy:
        return "steady: no inference windows"
    span = 0.5 * len(busy)

    def total(kind: str, index: int) -> float:
        return sum(e[index] for b in busy for e in buckets[b].get(kind, []))

    calls = sum(len(buckets[b].get("infer", [])) for b in busy)
    per_call = {kind: total(kind, 0) * 1000 / max(calls, 1) for kind in ("infer_copy", "infer_d2h")}
    gil = sorted(n for b in busy for _, n in buckets[b].get("gil", []))
    return (f"steady {span:.1f} s ({args.variant}, switch interval {sys.getswitchinterval() * 1000:g} ms): "
            f"{total('infer', 1) / span:.0f} images/s, infer busy {total('infer', 0) / span:.0%} "
            f"({total('infer', 1) / max(calls, 1):.1f} images, {total('infer', 0) * 1000 / max(calls, 1):.1f} ms "
            f"a call, of which copy in {per_call['infer_copy']:.2f} ms, out {per_call['infer_d2h']:.2f} ms), pre busy {total('pre', 0) / span:.0%}, post busy {total('post', 0) / span:.0%}, "
            f"decode calls {total('decode', 0) / span:.1f} s/s, gil late p50/p99 "
            f"{gil[len(gil) // 2] if gil else 0}/{gil[int(0.99 * (len(gil) - 1))] if gil else 0} us")


if __name__ == "__main__":
    sys.exit(main())
