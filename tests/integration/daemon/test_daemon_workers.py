"""Decode worker processes (`decode: {workers: N}`), CPU decoding: the daemon as a subprocess, real
clips and a real ZeroMQ subscriber. The GPU hand-over (CUDA IPC) is tested in tests/gpu."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.daemon_harness import DaemonProcess, run_daemon, write_config
from tests.integration.daemon.test_daemon_cpu import assert_contiguous, validate_all
from tests.support.media import make_clip
from tests.support.tiny_model import build_tiny_yolo_onnx

LABELS = ["red", "green", "blue"]
SIZES = {"cam1": (320, 240, 40), "cam10": (256, 144, 50), "odd": (200, 150, 30)}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = build_tiny_yolo_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", num_classes=3, input_size=64)
    return {"path": str(path), "labels": LABELS, "input_size": 64, "score_threshold": 0.6}


def worker_pids(daemon_pid: int) -> list[int]:
    """The daemon's spawned decode workers (children running multiprocessing's spawn_main)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == daemon_pid and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def detections_by_frame(messages: list[tuple[str, dict]]) -> dict[tuple[str, int], list]:
    return {(m["camera"], m["frame"]): [(d["label"], d["box"]) for d in m["detections"]]
            for t, m in messages if t.startswith("det/")}


def test_file_cameras_in_two_workers_publish_what_the_daemon_alone_publishes(tmp_path: Path,
                                                                           tiny_model: dict) -> None:
    cams = [{"id": cid, "url": str(make_clip(tmp_path / f"{cid}.mp4", w, h, n, fps=25)), "realtime": False}
            for cid, (w, h, n) in SIZES.items()]
    sched = {"max_batch": 8, "max_wait_ms": 50, "queue_per_camera": 2}
    alone = run_daemon(write_config(tmp_path / "alone.yaml", cams, tiny_model, scheduler=sched))
    workers = run_daemon(write_config(tmp_path / "workers.yaml", cams, tiny_model, scheduler=sched,
                                      decode={"workers": 2}))
    assert alone.returncode == 0, alone.stderr
    assert workers.returncode == 0, workers.stderr
    validate_all(workers.messages)
    for cid, (w, h, n) in SIZES.items():
        assert_contiguous(workers.detections(cid), frames=n)  # back-pressure through credits: nothing lost
        states = [m["state"] for m in workers.statuses(cid)]
        assert states[0] == "starting" and "up" in states and states[-1] == "eof", states
        # the workers' counters reach the daemon's metrics (the exit summary reads them)
        assert f"summary {cid}: final state eof, decoded {n}, published {n}, dropped 0" in workers.stderr
    assert detections_by_frame(workers.messages) == detections_by_frame(alone.messages)
    assert sum(len(d) for d in detections_by_frame(workers.messages).values()) > 0
    # the workers' log lines come out of the daemon's log, under the sources' logger names
    assert "INFO pipeline.sources.base: camera odd: eof (end of file)" in workers.stderr


def test_a_killed_worker_takes_only_its_own_cameras_and_comes_back(tmp_path: Path, tiny_model: dict) -> None:
    clip = make_clip(tmp_path / "loop.mp4", 160, 120, 25, fps=25)
    cams = [{"id": cid, "url": str(clip), "loop": True, "realtime": True} for cid in ("a", "b")]
    cfg = write_config(tmp_path / "cfg.yaml", cams, tiny_model, decode={"workers": 2})
    with DaemonProcess(cfg) as d:
        assert d.pump_until(lambda ms: all(sum(1 for t, _ in ms if t == f"det/{c}/") >= 10 for c in "ab"), 60), \
            d.stderr_path.read_text()
        first = worker_pids(d.proc.pid)
        assert len(first) == 2, first
        os.kill(first[0], signal.SIGKILL)

        def victim(ms: list) -> str | None:
            return next((m["camera"] for t, m in ms if t.startswith("status/") and m["state"] == "reconnecting"
                         and "decode worker" in m.get("reason", "")), None)

        assert d.pump_until(lambda ms: victim(ms) is not None, 20), d.stderr_path.read_text()
        dead = victim(d.messages)
        survivor = "b" if dead == "a" else "a"
        before = len(d.messages)
        # the victim comes back up in a new worker and publishes again
        assert d.pump_until(lambda ms: sum(1 for t, m in ms[before:] if t == f"det/{dead}/") >= 10, 30), \
            d.stderr_path.read_text()
        pids = worker_pids(d.proc.pid)
        assert len(pids) == 2 and first[0] not in pids, pids  # a new process replaced the killed one
        d.terminate()
        run = d.finish(timeout=15)
    assert run.returncode == 0, run.stderr
    validate_all(run.messages)
    assert not [p for p in pids if Path(f"/proc/{p}").exists()], "a decode worker outlived the daemon"
    reason = next(m["reason"] for m in run.statuses(dead) if m["state"] == "reconnecting")
    assert "exit code -9" in reason, reason
    # the other worker's camera never noticed: no status change, no gap in its frames
    assert [m["state"] for m in run.statuses(survivor)] == ["starting", "up", "stopped"]
    frames = [m["frame"] for m in run.detections(survivor)]
    assert frames == list(range(frames[0], frames[0] + len(frames))), "a gap in the surviving camera"
    assert_contiguous(run.detections(survivor))
    states = [m["state"] for m in run.statuses(dead)]
    assert states[-3:] == ["starting", "up", "stopped"] and "reconnecting" in states, states


def test_sigterm_stops_the_workers_with_the_daemon(tmp_path: Path, tiny_model: dict) -> None:
    clip = make_clip(tmp_path / "loop.mp4", 160, 120, 25, fps=25)
    cams = [{"id": f"c{i}", "url": str(clip), "loop": True, "realtime": True} for i in range(3)]
    cfg = write_config(tmp_path / "cfg.yaml", cams, tiny_model, decode={"workers": 2})
    with DaemonProcess(cfg) as d:
        assert d.pump_until(lambda ms: all(sum(1 for t, _ in ms if t == f"det/c{i}/") >= 5 for i in range(3)), 60), \
            d.stderr_path.read_text()
        pids = worker_pids(d.proc.pid)
        assert len(pids) == 2, pids
        d.terminate()
        t0 = time.monotonic()
        run = d.finish(timeout=10)
        assert time.monotonic() - t0 < 5.0, "SIGTERM must end the daemon within 5 s"
    assert run.returncode == 0, run.stderr
    for i in range(3):
        assert_contiguous(run.detections(f"c{i}"))
        assert run.statuses(f"c{i}")[-1]["state"] == "stopped"
    assert not [p for p in pids if Path(f"/proc/{p}").exists()], "a decode worker outlived the daemon"
