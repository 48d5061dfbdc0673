"""The daemon's infer thread prepares the backend before the batch thread and any camera start:
ONNX Runtime records its CUDA graphs per thread, and recording fails while another thread uses the
GPU (pipeline/infer/onnxruntime/gpu_sessions.py). With model.instances: 2, two infer threads each prepare their own
copy, one after the other, and their results still leave in batch order. Checked with the real CPU
backend, its methods wrapped only to record where and when they ran (and, to make the two threads
finish out of order, to delay one of them)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pipeline.config import parse_config
from pipeline.app.daemon import Daemon, DaemonOptions
from pipeline.infer.onnxruntime.backend import OnnxRuntimeBackend
from pipeline.publish.subscriber import Subscriber
from tests.support.daemon_harness import free_tcp_endpoint
from tests.support.media import make_clip
from tests.support.tiny_model import build_tiny_yolo_onnx


def test_the_infer_thread_binds_the_backend_before_cameras_start(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=1, input_size=64)
    seen: list[tuple[str, list[str]]] = []
    bind = OnnxRuntimeBackend.bind_to_thread

    def recording_bind(self: OnnxRuntimeBackend) -> None:
        others = sorted(t.name for t in threading.enumerate() if t.name.startswith(("camera-", "batch")))
        seen.append((threading.current_thread().name, others))
        bind(self)

    monkeypatch.setattr(OnnxRuntimeBackend, "bind_to_thread", recording_bind)
    cfg = parse_config(
        "cameras:\n  - {id: a, url: 'synthetic:64x48@30'}\n  - {id: b, url: 'synthetic:64x48@30'}\n"
        f"model: {{path: '{model}', labels: [x], input_size: 64}}\n"
        f"publish: {{bind: '{free_tcp_endpoint()}'}}\nmetrics: {{bind: null}}\n", base=tmp_path)
    daemon = Daemon(cfg, DaemonOptions(status_interval_s=0))
    daemon.start()
    try:
        running = {t.name for t in threading.enumerate()}
    finally:
        daemon.shutdown()
    assert seen == [("infer", [])]  # once, on the infer thread, with no camera or batch thread yet
    assert {"camera-a", "camera-b", "batch"} <= running  # and those started afterwards


def test_two_model_instances_run_batches_concurrently_and_publish_in_frame_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_tiny_yolo_onnx(tmp_path / "tiny.onnx", num_classes=1, input_size=64)
    frames = {"a": 40, "b": 30}
    clips = {cid: make_clip(tmp_path / f"{cid}.mp4", 96, 64, n, fps=25) for cid, n in frames.items()}
    binds: list[tuple[str, list[str]]] = []
    calls: list[tuple[str, float, float]] = []  # (thread, started, ended) of each inference call
    lock = threading.Lock()
    bind, infer = OnnxRuntimeBackend.bind_to_thread, OnnxRuntimeBackend.infer

    def recording_bind(self: OnnxRuntimeBackend) -> None:
        others = sorted(t.name for t in threading.enumerate() if t.name.startswith(("camera-", "batch")))
        binds.append((threading.current_thread().name, others))
        bind(self)

    def slow_first_instance(self: OnnxRuntimeBackend, batch):
        started = time.monotonic()
        if threading.current_thread().name == "infer-0":
            time.sleep(0.03)  # infer-1 overtakes it: its later batches finish first
        out = infer(self, batch)
        with lock:
            calls.append((threading.current_thread().name, started, time.monotonic()))
        return out

    monkeypatch.setattr(OnnxRuntimeBackend, "bind_to_thread", recording_bind)
    monkeypatch.setattr(OnnxRuntimeBackend, "infer", slow_first_instance)
    endpoint = free_tcp_endpoint()
    cameras = "".join(f"  - {{id: {cid}, url: '{clip}', realtime: false}}\n" for cid, clip in clips.items())
    cfg = parse_config(
        f"cameras:\n{cameras}"
        f"model: {{path: '{model}', labels: [x], input_size: 64, instances: 2}}\n"
        "scheduler: {max_batch: 4, max_wait_ms: 5}\n"
        f"publish: {{bind: '{endpoint}'}}\nmetrics: {{bind: null}}\n", base=tmp_path)
    subscriber = Subscriber(endpoint, kinds=("det",))
    try:
        daemon = Daemon(cfg, DaemonOptions(status_interval_s=0, wait_for_subscribers=1))
        daemon.start()
        assert daemon.run(threading.Event()) == 0  # returns once both files have ended and drained
        got = []
        while (msg := subscriber.recv(timeout=1.0)) is not None:
            got.append(msg[1])
    finally:
        subscriber.close()

    # each copy prepared on its own thread, one after the other, before any camera or batch thread
    assert binds == [("infer-0", []), ("infer-1", [])]
    threads = {name for name, _, _ in calls}
    assert threads == {"infer-0", "infer-1"}, calls
    overtaken = any(a_start < b_start and b_end < a_end
                    for _, a_start, a_end in calls for _, b_start, b_end in calls)
    assert overtaken, "no batch finished before an earlier one: the order below would prove nothing"
    for cid, n in frames.items():
        mine = [m for m in got if m["camera"] == cid]
        assert [m["frame"] for m in mine] == list(range(n)), cid  # every frame, in order
        assert [m["seq"] for m in mine] == list(range(n)), cid
