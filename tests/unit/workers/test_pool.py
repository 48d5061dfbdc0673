"""Decode workers, the parts that need no process: the MPS check and the messages' round trip
through the pipe's pickling (the processes themselves: tests/integration/daemon/test_daemon_workers.py)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from pipeline.config import CameraConfig
from pipeline.frame import CameraState, Frame, StatusEvent
from pipeline.workers.messages import DeviceRef, FrameMessage, StartCamera, StatusMessage
from pipeline.workers.pool import mps_running


def test_mps_is_running_when_its_control_pipe_exists(tmp_path: Path) -> None:
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}
    assert mps_running(env) is False
    (tmp_path / "control").touch()
    assert mps_running(env) is True


def test_messages_survive_the_pipe() -> None:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    messages = [
        FrameMessage(4, Frame("cam", 7, 0.28, 1700000000.5, 3, 2, pixels), 11),
        FrameMessage(4, Frame("cam", 8, None, 1700000000.6, 1920, 1080, DeviceRef(99, b"\x01" * 64, 0, (1080, 1920, 3))), 12),
        StatusMessage(4, StatusEvent("cam", CameraState.UP, 1700000000.0, "receiving frames")),
        StartCamera(4, CameraConfig(id="cam", url="synthetic:64x48@5"), 8),
    ]
    back = pickle.loads(pickle.dumps(messages))
    assert np.array_equal(back[0].frame.image, pixels) and back[0].token == 11
    assert (back[0].frame.camera_id, back[0].frame.index, back[0].frame.pts) == ("cam", 7, 0.28)
    assert back[1].frame.image == messages[1].frame.image and back[1].frame.width == 1920
    assert back[2:] == messages[2:]


def test_frames_arriving_after_close_are_released_not_delivered() -> None:
    # frames still in a pipe when the daemon has drained and closes its workers go nowhere: their
    # release tokens go back, and the camera's sink (the scheduler) is not called any more
    import threading
    from types import SimpleNamespace

    from pipeline.config import DecodeConfig
    from pipeline.observe.metrics import Metrics
    from pipeline.workers.pool import DecodeWorkerPool, WorkerCamera

    pool = DecodeWorkerPool(DecodeConfig(), 1, Metrics(), lambda event: None)
    delivered, released = [], []
    cam = WorkerCamera(CameraConfig(id="cam", url="synthetic:64x48@5"), 1, 0, None, delivered.append, pool,
                       threading.Event())
    pool._runs[cam.run] = cam
    link = SimpleNamespace(release=released.append, importer=None)
    frame = Frame("cam", 1, 0.0, 1700000000.0, 3, 2, np.zeros((2, 3, 3), np.uint8))
    pool._on_frame(link, FrameMessage(1, frame, 5))
    assert len(delivered) == 1
    pool.close()  # no worker was started: nothing to stop
    pool._on_frame(link, FrameMessage(1, frame, 6))
    assert len(delivered) == 1 and released == [6]


def test_a_live_camera_has_at_most_its_credits_on_their_way_and_the_rest_is_counted() -> None:
    # A real worker process, CPU decoding: the daemon side holds every frame it gets (as a daemon
    # too slow to take them would); the worker must stop at the credits and count what it drops.
    import threading
    import time

    from pipeline.config import DecodeConfig
    from pipeline.observe.metrics import Metrics
    from pipeline.workers.pool import DecodeWorkerPool

    metrics = Metrics()
    pool = DecodeWorkerPool(DecodeConfig(), 1, metrics, lambda event: None)
    held: list[Frame] = []
    try:
        live = CameraConfig(id="cam", url="synthetic:64x48@50", realtime=True)
        assert live.is_live
        pool.add_camera(live, held.append, 3, threading.Event())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and metrics.frames_dropped.value("cam", "backlog") < 10:
            time.sleep(0.1)
        assert len(held) == 3, len(held)
        assert metrics.frames_dropped.value("cam", "backlog") >= 10  # forwarded by the worker's counters
        held.clear()  # released: the worker may send again
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not held:
            time.sleep(0.05)
        assert 1 <= len(held) <= 3
    finally:
        pool.close()


def test_close_gives_workers_the_daemons_stop_budget_but_never_less_than_the_minimum() -> None:
    import time

    from pipeline.config import DecodeConfig
    from pipeline.observe.metrics import Metrics
    from pipeline.workers.pool import WORKER_EXIT_S, WORKER_MIN_EXIT_S, DecodeWorkerPool

    class Link:  # records the deadline it is given, as _WorkerLink.finish would wait for it
        def __init__(self) -> None:
            self.asked, self.deadline = False, None

        def ask_to_exit(self) -> None:
            self.asked = True

        def finish(self, deadline: float) -> None:
            self.deadline = deadline

    for given, low, high in ((None, WORKER_EXIT_S - 0.2, WORKER_EXIT_S + 0.2), (10.0, 9.8, 10.2),
                             (-5.0, WORKER_MIN_EXIT_S - 0.2, WORKER_MIN_EXIT_S + 0.2)):
        pool = DecodeWorkerPool(DecodeConfig(), 1, Metrics(), lambda event: None)
        link = Link()
        pool._links = [link]
        now = time.monotonic()
        pool.close(deadline=None if given is None else now + given)
        assert link.asked and low <= link.deadline - now <= high, (given, link.deadline - now)


def test_frames_returned_one_at_a_time_go_back_to_the_worker_in_one_message(monkeypatch) -> None:
    """A daemon that fell behind drops (and so returns) frames one by one; the release thread gathers
    what comes within RELEASE_COALESCE_S into one ReleaseFrames (scripts/release_cost.py)."""
    import multiprocessing
    import queue
    import threading
    import time

    import pipeline.workers.pool as pool

    monkeypatch.setattr(pool, "RELEASE_COALESCE_S", 0.2)  # wide, so a slow CI box still gathers them all
    here, worker_end = multiprocessing.Pipe(duplex=True)
    link = object.__new__(pool._WorkerLink)  # only what the release thread uses: no worker process
    link._conn, link._send_lock, link._releases, link.alive = here, threading.Lock(), queue.SimpleQueue(), True
    releaser = threading.Thread(target=link._send_releases, daemon=True)
    releaser.start()
    for token in range(5):  # 10 ms apart, as drops come with new frames
        link.release(token)
        time.sleep(0.01)
    assert worker_end.poll(2.0)
    messages = worker_end.recv()
    assert [m.tokens for m in messages] == [(0, 1, 2, 3, 4)]
    link._releases.put(None)
    releaser.join(2.0)
    assert not releaser.is_alive()
