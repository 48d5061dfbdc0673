"""The frame counters are owned typed values that are also exported unchanged: what /metrics
shows and what the deciding code reads (camera status board, systemd watchdog) are the same
numbers, and the deciding code never reads a metric back by its exported name."""
from __future__ import annotations

import time

import pytest
from prometheus_client import generate_latest

from pipeline.app.camera_status import CameraStatusBoard
from pipeline.frame import CameraState, StatusEvent
from pipeline.observe.metrics import CameraCounts, Metrics


def _count_some(m: Metrics) -> None:
    m.frames_decoded.labels("a").inc(5)
    m.frames_decoded.labels("b").inc(2)
    m.frames_dropped.labels("a", "queue_full").inc(2)
    m.frames_dropped.labels("a", "shutdown").inc()
    m.frames_dropped.labels("b", "queue_full").inc()
    m.mark_published("a", time.time())
    m.decode_errors.labels("b").inc(3)


def test_typed_counts_are_the_exported_values() -> None:
    m = Metrics()
    _count_some(m)
    counts = m.camera_counts()
    assert counts["a"] == CameraCounts(decoded=5, published=1, dropped=3, decode_errors=0)
    assert counts["b"] == CameraCounts(decoded=2, published=0, dropped=1, decode_errors=3)
    assert "never" not in counts
    assert m.value("pipeline_frames_dropped_total", camera="a", reason="queue_full") == \
        m.frames_dropped.value("a", "queue_full") == 2
    assert m.frames_dropped.total(reason="queue_full") == 3
    totals = m.flow_totals()
    assert (totals.decoded, totals.published, totals.dropped) == (7, 1, 4)
    text = generate_latest(m.registry).decode()
    assert 'pipeline_frames_decoded_total{camera="a"} 5.0' in text
    assert 'pipeline_decode_errors_total{camera="b"} 3.0' in text
    with pytest.raises(ValueError):  # as prometheus_client: a counter only goes up
        m.frames_decoded.labels("a").inc(-1)
    assert m.frames_decoded.value("a") == 5


def test_decisions_do_not_read_exported_metrics_back(monkeypatch: pytest.MonkeyPatch) -> None:
    m = Metrics()
    _count_some(m)

    def no_reading(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a decision read the Prometheus registry back")

    monkeypatch.setattr(m.registry, "collect", no_reading)
    monkeypatch.setattr(m.registry, "get_sample_value", no_reading)
    board = CameraStatusBoard(m)
    board.update(StatusEvent("a", CameraState.UP, time.time()))
    assert [(s.decoded, s.published, s.dropped) for s in board.snapshot()] == [(5, 1, 3)]
    assert board.summary_lines()[0].startswith("a: final state up, decoded 5, published 1, dropped 3")
