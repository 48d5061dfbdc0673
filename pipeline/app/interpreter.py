"""The daemon's interpreter settings: a short GIL switch interval, and startup objects kept out of
the garbage collector's full passes.

Every stage runs in one interpreter, and each call into C that lets go of the interpreter lock (an
ONNX Runtime run, a CUDA call) must wait to take it back until the thread holding it reaches the end
of its switch interval. With Python's default of 5 ms, the inference thread waited ~3.5 ms after each
such call with 135 cameras, and the GPU idled meanwhile (scripts/gpu_lab/e2e_timeline.py on the H200,
docs/BENCHMARKS.md, issue 22). A shorter interval bounds that wait; the cost is more frequent switches
between the threads that compute in Python.

PIPELINE_SWITCH_INTERVAL_MS overrides the value (an A/B aid; 5 is Python's default).

The cyclic garbage collector's full pass walks every container object of the process, holding the
lock: the imports, the model and the runtimes are most of them, 76-97 ms a pass on the 2-core CI
box (`PIPELINE_GC=python pipeline bench configs/bench-cpu.yaml --streams 6 --stages e2e-fast` prints
the pauses; docs/BENCHMARKS.md, issue 22 session 4), and the frames in flight, promoted to the oldest generation before they
die, trigger such a pass every few seconds. `StartupFreeze` moves what exists once the stages are
built into the collector's permanent generation (gc.freeze), so a full pass only walks what the
running daemon made since; shutdown hands them back (gc.unfreeze), so a daemon rebuilt in the same
process (tests, bench) leaves nothing behind. PIPELINE_GC=python keeps Python's own behaviour (an
A/B aid). `GcPauses` times every collection into pipeline_gc_pause_seconds.
"""
from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from typing import Any, Callable, Mapping

from pipeline.app.env_knobs import seconds_from_ms_env

log = logging.getLogger(__name__)

SWITCH_INTERVAL_ENV = "PIPELINE_SWITCH_INTERVAL_MS"
DAEMON_SWITCH_INTERVAL_S = 0.0005
GC_ENV = "PIPELINE_GC"
GC_MODES = ("freeze", "python")  # the first is the daemon's default


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


def gc_mode(environ: Mapping[str, str] | None = None) -> str:
    """"freeze" (the default) or "python"; ValueError (one line) for anything else."""
    raw = (os.environ if environ is None else environ).get(GC_ENV, "").strip()
    if raw and raw not in GC_MODES:
        raise ValueError(f"{GC_ENV}={raw!r}: expected one of {', '.join(GC_MODES)}")
    return raw or GC_MODES[0]


class StartupFreeze:
    """Keep the objects that exist once the daemon is built out of the collector's passes (module docs)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.enabled = gc_mode(environ) == "freeze"
        self.frozen = 0  # objects this freeze moved to the permanent generation

    def freeze(self) -> int:
        """Collect once (garbage frozen would stay for ever), then freeze; returns how many were frozen."""
        if self.enabled and not self.frozen:
            gc.collect()
            before = gc.get_freeze_count()
            gc.freeze()
            self.frozen = gc.get_freeze_count() - before
            log.debug("garbage collector: %d startup objects frozen", self.frozen)
        return self.frozen

    def unfreeze(self) -> None:
        """Hand them back to the collector (process-wide: what other daemons of this process froze too)."""
        if self.frozen:
            gc.unfreeze()
            self.frozen = 0


class GcPauses:
    """Times each garbage collection (the whole process holds still meanwhile) into `observe(generation,
    seconds)`, from start() to stop()."""

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self._observe = observe
        self._started: dict[int, float] = {}  # thread id -> when its collection began

    def start(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        key = threading.get_ident()
        if phase == "start":
            self._started[key] = time.perf_counter()
        elif (began := self._started.pop(key, None)) is not None:
            self._observe(info["generation"], time.perf_counter() - began)
