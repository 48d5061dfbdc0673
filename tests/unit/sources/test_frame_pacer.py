"""FramePacer's schedule, driven by a fake clock (delay_for is the pure decision)."""
from __future__ import annotations

import threading

import pytest

from pipeline.sources.pacing import MAX_LAG_S, FramePacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pacer(fps: float = 25.0) -> tuple[FramePacer, FakeClock]:
    clock = FakeClock()
    return FramePacer(threading.Event(), fps, clock=clock), clock


def test_frames_are_due_at_their_pts_relative_to_the_first():
    p, clock = pacer()
    assert p.delay_for(5.0) == 0
    clock.now += 0.01  # work took 10 ms
    assert p.delay_for(5.04) == pytest.approx(0.03)


def test_no_drift_when_each_frame_is_late_by_a_little():
    p, clock = pacer()
    p.delay_for(0.0)
    for i in range(1, 100):
        clock.now = 100.0 + i * 0.04 - 0.002  # arrive 2 ms early every time
        assert p.delay_for(i * 0.04) == pytest.approx(0.002)


def test_pts_restart_continues_one_period_after_the_last_frame():
    p, clock = pacer(fps=25)
    p.delay_for(0.0)
    clock.now += 0.04
    p.delay_for(0.04)  # due at 100.04
    assert p.delay_for(0.0) == pytest.approx(0.04)  # loop restart: due at 100.08


def test_a_repeated_pts_is_one_period_later():
    """A one-frame file with loop: true yields pts 0 on every pass (issue 23 item 8)."""
    p, clock = pacer(fps=25)
    assert p.delay_for(0.0) == 0
    for i in range(1, 5):
        assert p.delay_for(0.0) == pytest.approx(0.04 * i)  # nothing consumed the delay: each one later


def test_unknown_pts_steps_by_one_period():
    p, clock = pacer(fps=10)
    p.delay_for(None)
    assert p.delay_for(None) == pytest.approx(0.1)


def test_far_behind_schedule_reanchors_instead_of_bursting():
    p, clock = pacer()
    p.delay_for(0.0)
    clock.now += MAX_LAG_S + 2.0  # the box stalled
    assert p.delay_for(0.04) == 0
    clock.now += 0.01
    assert p.delay_for(0.08) == pytest.approx(0.03)  # paced again from the new anchor


def test_wait_returns_false_when_stopped():
    stop = threading.Event()
    stop.set()
    assert FramePacer(stop, 1.0).wait(0.0) is False
