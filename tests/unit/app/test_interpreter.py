import sys

import pytest

from pipeline.app.interpreter import DAEMON_SWITCH_INTERVAL_S, apply_switch_interval, switch_interval_s


def test_the_daemon_runs_with_a_short_switch_interval_unless_overridden() -> None:
    assert switch_interval_s({}) == DAEMON_SWITCH_INTERVAL_S < 0.005  # Python's default is 5 ms
    assert switch_interval_s({"PIPELINE_SWITCH_INTERVAL_MS": "5"}) == 0.005
    for bad in ("0", "fast", "1000"):
        with pytest.raises(ValueError, match=r"^PIPELINE_SWITCH_INTERVAL_MS='.*': expected milliseconds"):
            switch_interval_s({"PIPELINE_SWITCH_INTERVAL_MS": bad})


def test_apply_sets_the_process_switch_interval() -> None:
    before = sys.getswitchinterval()
    try:
        assert apply_switch_interval({"PIPELINE_SWITCH_INTERVAL_MS": "2"}) == 0.002
        assert abs(sys.getswitchinterval() - 0.002) < 1e-9
    finally:
        sys.setswitchinterval(before)
