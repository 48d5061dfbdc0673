"""Held-out evaluation of the demo detector on the demo clips.

    python3 scripts/assets/eval_demo_model.py [--model assets/demo/detector.onnx] [--clips assets/demo]

For every <clip>.mp4 with a <clip>.jsonl beside it: decode with PyAV (rgb24), letterbox with
pipeline.preprocess.reference.letterbox_reference, run onnxruntime (CPU, batches of 8), decode the
[B, 4+C, N] output (score >= 0.01, class-aware greedy NMS at IoU 0.5, at most 100 boxes), map boxes
to source pixels with LetterboxTransform.to_source, and match them per frame and class to the ground
truth greedily by score at IoU >= 0.5. Reports, per clip, precision and recall at score thresholds
0.35, 0.4 and 0.5, and AP@0.5 per class (all-point interpolated, VOC style) and their mean (mAP@0.5).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from pipeline.tools.evaluate.detection_metrics import iou_matrix  # noqa: E402
from pipeline.preprocess.reference import letterbox_reference  # noqa: E402

SCORE_FLOOR = 0.01
IOU_NMS = 0.5
IOU_MATCH = 0.5
MAX_DETECTIONS = 100
THRESHOLDS = (0.35, 0.4, 0.5)


def decode_one(output: np.ndarray, score_threshold: float, iou_threshold: float, max_det: int):
    """[4+C, N] -> (boxes xyxy model px [K,4], scores [K], classes [K]) after class-aware NMS."""
    scores_all = output[4:]
    cls = scores_all.argmax(0)
    scores = scores_all[cls, np.arange(scores_all.shape[1])]
    keep = scores >= score_threshold
    cx, cy, w, h = output[0, keep], output[1, keep], output[2, keep], output[3, keep]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    scores, cls = scores[keep], cls[keep]
    order = np.argsort(-scores, kind="stable")
    boxes, scores, cls = boxes[order], scores[order], cls[order]
    chosen: list[int] = []
    for c in np.unique(cls):
        idx = np.nonzero(cls == c)[0]
        alive = np.ones(len(idx), bool)
        ious = iou_matrix(boxes[idx], boxes[idx])
        for i in range(len(idx)):
            if alive[i]:
                chosen.append(int(idx[i]))
                alive &= ~(ious[i] > iou_threshold)
                alive[i] = False
    chosen = sorted(chosen, key=lambda i: -scores[i])[:max_det]
    return boxes[chosen], scores[chosen], cls[chosen]


def pipeline_decoder(labels: list[str]):
    """The daemon's own YoloPostprocessor as a per-batch decoder (NMS on source-pixel boxes)."""
    from pipeline.frame import Frame, InferenceResult
    from pipeline.postprocess.yolo import YoloPostprocessor

    post = YoloPostprocessor(labels, SCORE_FLOOR, IOU_NMS, MAX_DETECTIONS)

    def decode(out: np.ndarray, transforms: list) -> list[tuple]:
        frames = tuple(Frame("eval", k, None, 0.0, t.src_width, t.src_height, None) for k, t in enumerate(transforms))
        results = []
        for fd in post(InferenceResult(frames, tuple(transforms), out, 0.0)):
            d = fd.detections
            results.append((np.array([x.box for x in d], np.float32).reshape(-1, 4), np.array([x.score for x in d], np.float32),
                            np.array([x.class_id for x in d], int)))
        return results

    return decode


def detect_clip(session, mp4: Path, input_size: int, batch: int = 8, decoder=None) -> tuple[list[tuple], float]:
    """-> per frame (boxes in source px, scores, classes), and mean inference ms per image.

    decoder: None for this script's decode + NMS, or pipeline_decoder(labels)."""
    input_name = session.get_inputs()[0].name
    results: list[tuple] = []
    pending: list[tuple[np.ndarray, object]] = []
    infer_s = 0.0

    def flush() -> None:
        nonlocal infer_s
        x = np.stack([p[0] for p in pending])
        t = time.perf_counter()
        out = session.run(None, {input_name: x})[0]
        infer_s += time.perf_counter() - t
        if decoder is not None:
            results.extend(decoder(out, [p[1] for p in pending]))
        else:
            for o, (_, transform) in zip(out, pending):
                boxes, scores, cls = decode_one(o, SCORE_FLOOR, IOU_NMS, MAX_DETECTIONS)
                results.append((transform.to_source(boxes) if len(boxes) else boxes, scores, cls))
        pending.clear()

    with av.open(str(mp4)) as container:
        for frame in container.decode(video=0):
            pending.append(letterbox_reference(frame.to_ndarray(format="rgb24"), input_size))
            if len(pending) == batch:
                flush()
    if pending:
        flush()
    return results, 1000.0 * infer_s / max(1, len(results))


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = tp[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))


def evaluate_clip(detections: list[tuple], truth: list[dict], labels: list[str]) -> dict:
    """Greedy per-frame, per-class matching at IoU >= IOU_MATCH in score order."""
    if len(detections) != len(truth):
        raise ValueError(f"{len(detections)} decoded frames but {len(truth)} ground-truth lines")
    all_scores = {c: [] for c in range(len(labels))}
    all_tp = {c: [] for c in range(len(labels))}
    n_gt = {c: 0 for c in range(len(labels))}
    for (boxes, scores, cls), line in zip(detections, truth):
        gt_boxes = np.array([o["box"] for o in line["objects"]], np.float64).reshape(-1, 4)
        gt_cls = np.array([labels.index(o["label"]) for o in line["objects"]], int)
        for c in range(len(labels)):
            g = gt_boxes[gt_cls == c]
            n_gt[c] += len(g)
            d_idx = np.nonzero(cls == c)[0]
            d_idx = d_idx[np.argsort(-scores[d_idx], kind="stable")]
            used = np.zeros(len(g), bool)
            ious = iou_matrix(boxes[d_idx].astype(np.float64), g) if len(g) and len(d_idx) else np.zeros((len(d_idx), len(g)))
            for row, i in enumerate(d_idx):
                hit = False
                if len(g):
                    cand = np.where(used, -1.0, ious[row])
                    j = int(cand.argmax())
                    if cand[j] >= IOU_MATCH:
                        used[j] = hit = True
                all_scores[c].append(float(scores[i]))
                all_tp[c].append(hit)
    report: dict = {"frames": len(truth), "gt": int(sum(n_gt.values())), "ap50": {}}
    for c, name in enumerate(labels):
        report["ap50"][name] = average_precision(np.array(all_scores[c]), np.array(all_tp[c], bool), n_gt[c])
    aps = [v for v in report["ap50"].values() if not np.isnan(v)]
    report["map50"] = float(np.mean(aps)) if aps else float("nan")
    s = np.concatenate([np.array(all_scores[c]) for c in all_scores]) if all_scores else np.zeros(0)
    tp = np.concatenate([np.array(all_tp[c], bool) for c in all_tp]) if all_tp else np.zeros(0, bool)
    for th in THRESHOLDS:
        keep = s >= th
        n_tp = int(tp[keep].sum())
        n_det = int(keep.sum())
        report[f"at_{th}"] = {"precision": n_tp / max(1, n_det), "recall": n_tp / max(1, report["gt"]),
                              "tp": n_tp, "fp": n_det - n_tp, "fn": report["gt"] - n_tp}
    return report


def evaluate_all(model: Path, clips_dir: Path, input_size: int | None = None, use_pipeline: bool = False) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    if input_size is None:
        input_size = int(session.get_inputs()[0].shape[-1])
    labels = (clips_dir / "labels.txt").read_text().split()
    decoder = pipeline_decoder(labels) if use_pipeline else None
    shown = model.resolve().relative_to(ROOT) if model.resolve().is_relative_to(ROOT) else model
    results = {"model": str(shown), "input_size": input_size, "clips": {},
               "decoder": "pipeline.postprocess.yolo.YoloPostprocessor" if use_pipeline else "eval_demo_model.decode_one"}
    for mp4 in sorted(clips_dir.glob("*.mp4")):
        jsonl = mp4.with_suffix(".jsonl")
        if not jsonl.exists():
            continue
        truth = [json.loads(line) for line in jsonl.read_text().splitlines()]
        dets, ms = detect_clip(session, mp4, input_size, decoder=decoder)
        rep = evaluate_clip(dets, truth, labels)
        rep["infer_ms_per_image_batch8"] = round(ms, 2)
        results["clips"][mp4.name] = rep
    return results


def format_results(results: dict) -> str:
    lines = [f"model {results['model']} input {results['input_size']} decoder {results.get('decoder', '?')}"]
    for name, r in results["clips"].items():
        aps = " ".join(f"{k}={v:.3f}" for k, v in r["ap50"].items())
        at = " | ".join(f"@{th} P {r[f'at_{th}']['precision']:.4f} R {r[f'at_{th}']['recall']:.4f} "
                        f"(fp {r[f'at_{th}']['fp']} fn {r[f'at_{th}']['fn']})" for th in THRESHOLDS)
        lines.append(f"{name}: frames {r['frames']} gt {r['gt']} | {at} | mAP@0.5 {r['map50']:.4f} ({aps}) "
                     f"| {r['infer_ms_per_image_batch8']} ms/img")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "assets" / "demo" / "detector.onnx")
    parser.add_argument("--clips", type=Path, default=ROOT / "assets" / "demo")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    parser.add_argument("--pipeline-postprocess", action="store_true",
                        help="decode with the daemon's YoloPostprocessor instead of this script's decode + NMS")
    args = parser.parse_args()
    results = evaluate_all(args.model, args.clips, use_pipeline=args.pipeline_postprocess)
    print(format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
