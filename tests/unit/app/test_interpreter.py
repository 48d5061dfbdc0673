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


def test_gc_mode_defaults_to_freeze_and_names_a_bad_value() -> None:
    from pipeline.app.interpreter import gc_mode

    assert gc_mode({}) == "freeze"
    assert gc_mode({"PIPELINE_GC": "python"}) == "python"
    with pytest.raises(ValueError, match=r"^PIPELINE_GC='off': expected one of freeze, python$"):
        gc_mode({"PIPELINE_GC": "off"})


def test_startup_freeze_keeps_existing_objects_out_of_collections_until_unfrozen() -> None:
    import gc
    import weakref

    from pipeline.app.interpreter import StartupFreeze

    class Node:
        pass

    assert gc.get_freeze_count() == 0
    startup = Node()
    startup.self = startup  # a cycle: only the collector frees it
    gone = weakref.ref(startup)
    freeze = StartupFreeze({})
    try:
        frozen = freeze.freeze()
        assert frozen > 1000 and gc.get_freeze_count() == frozen  # the test run's modules, at least
        assert freeze.freeze() == frozen  # once
        del startup
        gc.collect()
        assert gone() is not None  # frozen: no pass looks at it
    finally:
        freeze.unfreeze()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None  # handed back: collected


def test_startup_freeze_does_nothing_when_python_keeps_its_own_behaviour() -> None:
    import gc

    from pipeline.app.interpreter import StartupFreeze

    freeze = StartupFreeze({"PIPELINE_GC": "python"})
    assert freeze.freeze() == 0 and gc.get_freeze_count() == 0
    freeze.unfreeze()


def test_gc_pauses_times_each_collection_by_generation() -> None:
    import gc

    from pipeline.app.interpreter import GcPauses

    seen: list[tuple[int, float]] = []
    pauses = GcPauses(lambda generation, seconds: seen.append((generation, seconds)))
    pauses.start()
    pauses.start()  # idempotent: one callback
    try:
        gc.collect(1)
        gc.collect(2)
    finally:
        pauses.stop()
    gc.collect()
    assert [g for g, _ in seen] == [1, 2]
    assert all(0 <= s < 5 for _, s in seen)
