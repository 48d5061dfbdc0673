"""ONNX Runtime CUDA EP on one model, fp32 and fp16, through the pipeline's backend: load time
(warm-up), frames/s per batch size with IO binding, and nodes ONNX Runtime placed on the CPU.

    python3 scripts/gpu_lab/gpu_ort_check.py MODEL.onnx INPUT_SIZE NUM_CLASSES [--batches 1,8,32]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.config import ModelConfig  # noqa: E402
from pipeline.infer import create_backend  # noqa: E402
from pipeline.gpu.device_buffer import DeviceView  # noqa: E402
from pipeline.infer.onnxruntime.fp16 import fp16_model_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("input_size", type=int)
    ap.add_argument("classes", type=int)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    labels = [f"c{i}" for i in range(args.classes)]
    for precision in ("fp32", "fp16"):
        cfg = ModelConfig(path=args.model, labels=labels, input_size=args.input_size, precision=precision)
        t = time.perf_counter()
        backend = create_backend(cfg, max(int(b) for b in args.batches.split(",")), "gpu")
        load_s = time.perf_counter() - t
        path = fp16_model_path(args.model) if precision == "fp16" else args.model
        so = ort.SessionOptions()
        so.log_severity_level = 2  # warnings name nodes ORT put on the CPU
        sess = ort.InferenceSession(str(path), so, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        print(f"{precision}: load+warm-up {load_s:.1f} s, session providers {sess.get_providers()}", flush=True)
        for b in (int(x) for x in args.batches.split(",")):
            session = backend._batch_session(b)
            buffer = session.input_buffer
            view = DeviceView(buffer.data_ptr(), (b, 3, args.input_size, args.input_size), backend.input_dtype, buffer)
            for _ in range(3):
                session.run(view)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                session.run(view)
                n += 1
            dt = time.perf_counter() - t0
            print(f"  {precision} batch {b}: {n * b / dt:.0f} frames/s ({dt / n * 1000:.2f} ms per call)", flush=True)
        backend.close()


if __name__ == "__main__":
    main()
