"""Decode workers leave by themselves at shutdown, before the daemon's kill deadline (issue 22:
"decode worker N did not exit in time; killing it" followed 7 of 8 GPU runs). Real worker
processes, real looping file cameras decoding as fast as they can, as in `pipeline bench`."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from pipeline.config import CameraConfig, DecodeConfig
from pipeline.observe.metrics import Metrics
from pipeline.workers import child
from pipeline.workers.pool import WORKER_EXIT_S, DecodeWorkerPool
from tests.support.media import make_clip


def test_the_worker_exit_budget_leaves_the_daemon_a_margin() -> None:
    assert child.EXIT_CAMERAS_S + child.EXIT_FLUSH_S <= WORKER_EXIT_S / 2


def test_workers_with_busy_cameras_exit_cleanly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clip = make_clip(tmp_path / "c.mp4", 320, 240, 30)
    got = threading.Semaphore(0)
    pool = DecodeWorkerPool(DecodeConfig(), 2, Metrics(), lambda event: None)
    cams = [pool.add_camera(CameraConfig(id=f"c{i}", url=str(clip), loop=True, realtime=False),
                            lambda frame: got.release(), None, threading.Event()) for i in range(6)]
    links = [link for link in pool._links if link is not None]
    assert len(links) == 2
    for _ in range(24):  # every worker is decoding
        assert got.acquire(timeout=60), "no frames from the workers"
    for cam in cams:  # the daemon's order: cameras asked to stop (not waited for here), then close()
        cam.request_stop()
    with caplog.at_level(logging.WARNING, logger="pipeline.workers.pool"):
        pool.close()
    assert "did not exit in time" not in caplog.text, caplog.text
    assert [link.process.exitcode for link in links] == [0, 0]  # os._exit(0), not SIGKILL (-9)
