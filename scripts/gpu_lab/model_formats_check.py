"""The model formats and input conventions of docs/models.md on a device, against the CPU.

Builds the demo detector's re-exports (tests/support/model_families.py: yolov5 rows, end2end with the
NMS in the graph, NHWC uint8 BGR input, static batch 1) and runs each through the pipeline's own
stages (DALI letterbox, ONNX Runtime backend, DetectionPostprocessor) on `--device` and on the CPU,
on frames of the three demo clips; prints one line per variant and exits 1 if any differs
(boxes > 0.5 px, scores > 1e-3, other labels). For a GPU box (not yet run on one):

    python3 scripts/gpu_lab/model_formats_check.py --device gpu [--precision fp16] [--max-candidates 1024]

With --device cpu it checks itself (every variant must then match). On the GPU, DALI's gpu resize
may move a score by a grey level's worth and fp16 by more: read small counts of differences with that
in mind (the CPU tests hold the exact comparisons).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pipeline.config import ModelConfig  # noqa: E402
from pipeline.frame import Frame, FrameBatch  # noqa: E402
from pipeline.infer import create_backend  # noqa: E402
from pipeline.postprocess import DetectionPostprocessor  # noqa: E402
from pipeline.preprocess import create_preprocessor  # noqa: E402
from tests.support.model_families import demo_variant  # noqa: E402

DEMO = REPO / "assets" / "demo"
LABELS = (DEMO / "labels.txt").read_text().split()
VARIANTS = [("yolov8", None, {}), ("yolov8", 1, {}), ("yolov5", None, {"format": "yolov5"}),
            ("end2end", None, {}), ("nhwc-bgr-uint8", None, {"input": {"channels": "BGR"}})]


def frames(every: int = 15, last: int = 60) -> list[Frame]:
    out = []
    for clip in ("street_1280x720", "plaza_768x576", "yard_640x480"):
        with av.open(str(DEMO / f"{clip}.mp4")) as container:
            for i, picture in enumerate(container.decode(video=0)):
                if i % every == 0:
                    image = picture.to_ndarray(format="rgb24")
                    out.append(Frame(clip, i, None, 0.0, image.shape[1], image.shape[0], image))
                if i >= last:
                    break
    return out


def detect(path: Path, device: str, model: dict, pictures: list[Frame], batch: int = 8) -> tuple[str, list]:
    cfg = ModelConfig(path=path, labels=LABELS, score_threshold=0.4, iou_threshold=0.5, **model)
    with create_backend(cfg, batch, device) as backend:
        spec = backend.model_spec
        pre = create_preprocessor(device, spec.input.size, backend.input_dtype, batch, 2,
                                  convention=spec.convention())
        post = DetectionPostprocessor.for_model(spec, cfg.score_threshold, cfg.iou_threshold)
        results = []
        for i in range(0, len(pictures), batch):
            results += post(backend.infer(pre(FrameBatch(tuple(pictures[i:i + batch]), 0.0, 0.0))))
        return spec.describe(backend.batch_note), results


def differences(want: list, got: list) -> int:
    bad = 0
    for a, b in zip(want, got, strict=True):
        if len(a.detections) != len(b.detections):
            bad += 1
            continue
        for x, y in zip(a.detections, b.detections):
            if (x.label != y.label or abs(x.score - y.score) > 1e-3
                    or max(abs(p - q) for p, q in zip(x.box, y.box)) > 0.5):
                bad += 1
    return bad


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="gpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    ap.add_argument("--max-candidates", type=int, default=None)
    args = ap.parse_args()
    pictures = frames()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for variant, batch, model in VARIANTS:
            path = demo_variant(DEMO / "detector.onnx", Path(tmp) / f"{variant}-{batch}.onnx", variant, batch)
            model = {**model, "max_candidates": args.max_candidates}
            _, cpu = detect(path, "cpu", {**model, "max_candidates": None}, pictures)
            try:
                line, dev = detect(path, args.device, {**model, "precision": args.precision}, pictures)
            except Exception as exc:  # noqa: BLE001 - a refusal is a result too: print it and go on
                print(f"{variant:16} batch {batch or 'dyn':>3}: refused: {exc}")
                continue
            bad = differences(cpu, dev)
            failed += bool(bad)
            print(f"{variant:16} batch {batch or 'dyn':>3}: {'ok' if not bad else f'{bad} differences'}  [{line}]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
