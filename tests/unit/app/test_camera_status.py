"""CameraStatusBoard.snapshot reads every camera's counters in one pass (issue 23 item 6): the
numbers per camera must still be that camera's own, drops summed over their reasons."""
from __future__ import annotations

from pipeline.app.camera_status import CameraStatusBoard
from pipeline.app.service_status import camera_summary
from pipeline.frame import CameraState, StatusEvent
from pipeline.observe.metrics import Metrics


def test_snapshot_counts_are_per_camera_and_drops_sum_their_reasons() -> None:
    m = Metrics()
    board = CameraStatusBoard(m)
    for i, cam in enumerate(("a", "b", "c")):
        board.update(StatusEvent(cam, CameraState.UP if cam != "c" else CameraState.RECONNECTING, 0.0, "r"))
        m.frames_decoded.labels(cam).inc(10 + i)
        m.frames_published.labels(cam).inc(5 + i)
        m.frames_dropped.labels(cam, "queue_full").inc(1 + i)
        m.frames_dropped.labels(cam, "shutdown").inc(2)
        m.decode_errors.labels(cam).inc(i)
    m.frames_decoded.labels("gone").inc(99)  # counters of a camera with no state are not reported
    snaps = {s.camera_id: s for s in board.snapshot()}
    assert sorted(snaps) == ["a", "b", "c"]
    assert [(s.decoded, s.published, s.dropped, s.decode_errors) for s in snaps.values()] == [
        (10, 5, 3, 0), (11, 6, 4, 1), (12, 7, 5, 2)]
    assert camera_summary(board) == "3 camera(s): 2 up, 1 reconnecting [c]; published 18"


def test_a_camera_without_counters_yet_reads_zero() -> None:
    board = CameraStatusBoard(Metrics())
    board.update(StatusEvent("new", CameraState.STARTING, 0.0))
    (snap,) = board.snapshot()
    assert (snap.decoded, snap.published, snap.dropped, snap.decode_errors) == (0, 0, 0, 0)
