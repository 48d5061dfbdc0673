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


def test_run_refuses_a_bad_override_in_one_line(tmp_path) -> None:
    import os
    import subprocess

    from tests.support.daemon_harness import REPO

    out = subprocess.run([sys.executable, "-m", "pipeline", "run", "configs/demo.yaml"], cwd=REPO,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PIPELINE_SWITCH_INTERVAL_MS": "fast"})
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "pipeline: cannot start: PIPELINE_SWITCH_INTERVAL_MS='fast': expected milliseconds from 0.05 to 100")
