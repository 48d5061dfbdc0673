"""Metrics and health over real HTTP from the real daemon subprocess: /healthz is 503 while no frame
flows (a dead RTSP camera) and 200 once frames flow (a camera added by SIGHUP); every metric the
daemon exposes is documented in docs/metrics.md, and every documented one is exposed."""
from __future__ import annotations

import re
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon_harness import REPO, DaemonProcess, write_config
from tests.support.tiny_model import build_tiny_yolo_onnx

GPU_ONLY = {"pipeline_gpu_memory_used_bytes", "pipeline_gpu_memory_total_bytes"}
# registered by the preview service, which this config does not turn on (tests/unit/preview checks them)
PREVIEW_ONLY = {"pipeline_preview_frames_encoded_total", "pipeline_preview_frames_skipped_total",
                "pipeline_preview_snapshots_total", "pipeline_preview_cpu_seconds_total",
                "pipeline_preview_http_rejected_total"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(base + "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def documented_metrics() -> set[str]:
    """Metric names in docs/metrics.md's tables: rows starting with | `pipeline_...`."""
    text = (REPO / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(pipeline_[a-z_]+)`", text, flags=re.M))


def poll(d: DaemonProcess, predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        d.pump(0.2)
    return predicate()


def test_health_and_metrics_over_http(tmp_path: Path) -> None:
    model = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=3, input_size=64)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dead = {"id": "door", "url": f"rtsp://viewer:hunter2@127.0.0.1:{free_port()}/x", "timeout_s": 1}
    cfg = write_config(tmp_path / "cfg.yaml", [dead],
                       {"path": str(model), "labels": ["r", "g", "b"], "input_size": 64},
                       metrics={"bind": f"127.0.0.1:{port}"})
    with DaemonProcess(cfg) as d:
        def door_reconnecting():
            try:
                s = scrape(base)
            except OSError:
                return None  # not listening yet
            return s if (sample(s, "pipeline_reconnects_total", camera="door") or 0) >= 1 else None

        assert poll(d, door_reconnecting, 60), d.stderr_path.read_text()
        status, body = get(base + "/healthz")
        assert status == 503 and body.startswith("unhealthy"), body
        assert get(base + "/nope")[0] == 404

        doc = yaml.safe_load(cfg.read_text())
        doc["cameras"].append({"id": "yard", "url": "synthetic:64x48@15"})
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
        d.proc.send_signal(signal.SIGHUP)
        assert poll(d, lambda: get(base + "/healthz")[0] == 200, 60), d.stderr_path.read_text()
        assert poll(d, lambda: (sample(scrape(base), "pipeline_frames_published_total", camera="yard") or 0) >= 20, 60)
        s = scrape(base)
        exposed_text = get(base + "/metrics")[1]
        d.terminate()
        run = d.finish(timeout=30)
    assert run.returncode == 0, run.stderr
    assert "hunter2" not in run.stderr and "rtsp://viewer:***@127.0.0.1" in run.stderr

    assert sample(s, "pipeline_frames_decoded_total", camera="yard") >= 20
    assert sample(s, "pipeline_camera_up", camera="yard") == 1
    assert sample(s, "pipeline_camera_state", camera="yard", state="up") == 1
    assert sample(s, "pipeline_camera_state", camera="door", state="reconnecting") == 1
    assert sample(s, "pipeline_camera_state", camera="door", state="up") == 0
    assert sample(s, "pipeline_config_reloads_total", result="applied") == 1
    assert sample(s, "pipeline_batch_size_count") >= 1
    assert sample(s, "pipeline_stage_seconds_count", stage="inference") >= 1
    assert sample(s, "pipeline_stage_seconds_count", stage="preprocess") >= 1
    assert sample(s, "pipeline_capture_to_publish_seconds_count") >= 20
    assert sample(s, "pipeline_queue_depth", camera="yard") is not None
    assert sample(s, "pipeline_stage_queue_depth", queue="publish") is not None
    assert 0 <= sample(s, "pipeline_seconds_since_last_publish") < 10

    # prometheus_client adds a `<name>_created` timestamp family per counter/histogram (documented once)
    families = {f.name for f in text_string_to_metric_families(exposed_text) if not f.name.endswith("_created")}
    exposed = {f + "_total" if f"{f}_total" in exposed_text else f for f in families}
    documented = documented_metrics()
    assert exposed - documented == set(), "metrics missing from docs/metrics.md"
    assert documented - exposed - GPU_ONLY - PREVIEW_ONLY == set(), "docs/metrics.md lists metrics the daemon does not expose"


def test_nvidia_smi_memory_lines_parse_to_bytes() -> None:
    from pipeline.observe.metrics import parse_nvidia_smi_memory

    out = "0, 1024, 81559\n1, 0, 81559\n[N/A], x, y\n"
    assert parse_nvidia_smi_memory(out) == [("0", 1024 * 2**20, 81559 * 2**20), ("1", 0.0, 81559 * 2**20)]
