"""PIPELINE_TEST_INFER_DELAY_MS (a test aid that `pipeline run` applies as a backend wrapper): its
value is checked with a one-line error; unset, nothing is wrapped. The delay itself is exercised end to
end by tests/integration/reliability/test_reliability_load.py."""
from __future__ import annotations

import pytest

from pipeline.app.slow_inference import backend_delay_from_environment, simulated_infer_delay_s


def test_milliseconds_are_read_and_checked() -> None:
    assert simulated_infer_delay_s({}) == 0.0
    assert simulated_infer_delay_s({"PIPELINE_TEST_INFER_DELAY_MS": " 250 "}) == 0.25
    for bad in ("abc", "-1", "60001", "nan"):
        with pytest.raises(ValueError, match=r"^PIPELINE_TEST_INFER_DELAY_MS='.*': expected milliseconds from 0 to 60000$"):
            simulated_infer_delay_s({"PIPELINE_TEST_INFER_DELAY_MS": bad})


def test_unset_means_no_wrapper() -> None:
    assert backend_delay_from_environment({}) is None
    assert backend_delay_from_environment({"PIPELINE_TEST_INFER_DELAY_MS": "0"}) is None
    assert backend_delay_from_environment({"PIPELINE_TEST_INFER_DELAY_MS": "5"}) is not None
