"""Analytics on the GPU path (NVDEC in a decode worker -> the fused letterbox kernel -> ONNX Runtime CUDA): the stage
reads only host detections, so tracking on the held-out clips must be as good as on the CPU path
(tests/integration/analytics/test_tracking_accuracy.py has the same thresholds)."""
from __future__ import annotations

import pytest
import yaml

from tests.support.gpu_env import skip_module_without_gpu

skip_module_without_gpu("PyNvVideoCodec", "onnxruntime")
pytest.importorskip("motmetrics", reason="tracking metrics need motmetrics (the lean GPU bundle has none)")

from pipeline.config import parse_config  # noqa: E402
from pipeline.tools.evaluate.command import run_full_evaluation  # noqa: E402
from tests.support.daemon_harness import REPO, free_tcp_endpoint  # noqa: E402


def test_tracking_accuracy_on_the_gpu_path() -> None:
    doc = yaml.safe_load((REPO / "configs" / "eval-tracking.yaml").read_text())
    doc["decode"] = {"device": "gpu", "workers": 1}
    doc["preprocess"] = {"device": "gpu"}
    doc["publish"] = {"bind": free_tcp_endpoint()}
    cfg = parse_config(yaml.safe_dump(doc), source="eval-tracking-gpu.yaml", base=REPO / "configs")
    clips = REPO / "assets" / "tracking"
    results = run_full_evaluation(cfg, {"a": str(clips / "heldout_a_640x480.jsonl"),
                                        "b": str(clips / "heldout_b_640x480.jsonl")})
    for r in results:
        assert r.tracking is not None, r.lines()
        assert r.tracking.idf1 >= 0.90 and r.tracking.mota >= 0.85, r.tracking.line()
        # GPU boxes differ from the CPU path's by a few pixels: one crossing more or less per key
        keys = {k for k in (*r.published_counts, *r.true_counts) if k[0] == "middle"}
        assert all(abs(r.published_counts.get(k, 0) - r.true_counts.get(k, 0)) <= 1 for k in keys), r.lines()
