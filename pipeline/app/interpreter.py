"""The daemon's interpreter setting: a short GIL switch interval.

Every stage runs in one interpreter, and each call into C that lets go of the interpreter lock (an
ONNX Runtime run, a CUDA call) must wait to take it back until the thread holding it reaches the end
of its switch interval. With Python's default of 5 ms, the inference thread waited ~3.5 ms after each
such call with 135 cameras, and the GPU idled meanwhile (scripts/gpu_lab/e2e_timeline.py on the H200,
docs/BENCHMARKS.md, issue 22). A shorter interval bounds that wait; the cost is more frequent switches
between the threads that compute in Python.

PIPELINE_SWITCH_INTERVAL_MS overrides the value (an A/B aid; 5 is Python's default).
"""
from __future__ import annotations

import logging
import sys
from typing import Mapping

from pipeline.app.env_knobs import seconds_from_ms_env

log = logging.getLogger(__name__)

SWITCH_INTERVAL_ENV = "PIPELINE_SWITCH_INTERVAL_MS"
DAEMON_SWITCH_INTERVAL_S = 0.0005


def switch_interval_s(environ: Mapping[str, str] | None = None) -> float:
    """The switch interval the daemon runs with; ValueError (one line) for a bad override."""
    override = seconds_from_ms_env(SWITCH_INTERVAL_ENV, 0.05, 100, environ)
    return DAEMON_SWITCH_INTERVAL_S if override is None else override


def apply_switch_interval(environ: Mapping[str, str] | None = None) -> float:
    """Set the process's GIL switch interval for the daemon (it is process-wide); returns it."""
    interval = switch_interval_s(environ)
    sys.setswitchinterval(interval)
    log.debug("GIL switch interval %.2f ms", interval * 1000)
    return interval
