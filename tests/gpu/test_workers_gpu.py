"""Decode workers with many NVDEC cameras stop them and exit in time (issue 22: on the H200, 34
cameras a worker were still stopping 0.5-1.25 s after the Shutdown, every camera missed the daemon's
1 s join, and workers were killed 2.0-2.9 s after being asked to exit, because destroying each NVDEC
decoder holds the interpreter lock for 0.1-1 s; workers/teardown.py now defers that)."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from tests.support.gpu_env import skip_module_without_gpu

skip_module_without_gpu("PyNvVideoCodec")

from pipeline.app.cameras import join_cameras  # noqa: E402
from pipeline.config import CameraConfig, DecodeConfig  # noqa: E402
from pipeline.observe.metrics import Metrics  # noqa: E402
from pipeline.workers.pool import DecodeWorkerPool  # noqa: E402
from tests.support.media import make_clip  # noqa: E402

CAMERAS = 34  # one worker's share of 135 cameras in 4 workers


def test_a_worker_with_many_nvdec_cameras_stops_them_within_the_join_and_exits(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clip = make_clip(tmp_path / "c.mp4", 1280, 720, 60)
    got = threading.Semaphore(0)
    pool = DecodeWorkerPool(DecodeConfig(device="gpu", nvdec_output="nv12"), 1, Metrics(), lambda event: None)
    cams = [pool.add_camera(CameraConfig(id=f"c{i}", url=str(clip), loop=True, realtime=True),
                            lambda frame: got.release(), None, threading.Event()) for i in range(CAMERAS)]
    link = pool._links[0]
    assert link is not None
    for _ in range(CAMERAS * 5):  # every camera has a decoder and is decoding
        assert got.acquire(timeout=120), "no frames from the worker"
    with caplog.at_level(logging.WARNING):
        asked = time.monotonic()
        for cam in cams:  # the daemon's order: cameras asked to stop and joined, then close()
            cam.request_stop()
        join_cameras(cams, 1.0)
        stopped_s = time.monotonic() - asked
        pool.close()
    print(f"{CAMERAS} NVDEC cameras: stopped in {stopped_s:.2f} s; worker exit code {link.process.exitcode}")
    assert "did not stop within" not in caplog.text, caplog.text
    assert "did not exit in time" not in caplog.text, caplog.text
    assert link.process.exitcode == 0  # os._exit(0), not SIGKILL (-9)
