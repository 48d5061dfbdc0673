"""A test and diagnostic aid, never for production: PIPELINE_TEST_INFER_DELAY_MS delays every
inference batch by that many ms, to simulate a model slower than the cameras
(tests/integration/reliability/test_reliability_load.py). `pipeline run` reads it and hands the
daemon a backend wrapper (DaemonOptions.wrap_backend); the daemon itself knows nothing of it."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

from pipeline.app.env_knobs import seconds_from_ms_env
from pipeline.frame import InferenceResult, TensorBatch
from pipeline.infer import Backend
from pipeline.infer.base import Completed

log = logging.getLogger("pipeline.app.slow_inference")

TEST_INFER_DELAY_ENV = "PIPELINE_TEST_INFER_DELAY_MS"


def simulated_infer_delay_s(environ: Mapping[str, str] | None = None) -> float:
    """Seconds from PIPELINE_TEST_INFER_DELAY_MS (0 when unset); ValueError (one line) if invalid."""
    return seconds_from_ms_env(TEST_INFER_DELAY_ENV, 0, 60_000, environ) or 0.0


class DelayedBackend:
    """The wrapped backend, with `delay_s` of sleep before every infer() (timed as inference)."""

    def __init__(self, inner: Backend, delay_s: float) -> None:
        self._inner = inner
        self._delay_s = delay_s

    def infer(self, batch: TensorBatch) -> InferenceResult:
        time.sleep(self._delay_s)
        return self._inner.infer(batch)

    def submit(self, batch: TensorBatch) -> Completed:  # delayed, so never queued ahead
        return Completed(self.infer(batch))

    def __getattr__(self, name: str) -> Any:  # everything else is the real backend's
        return getattr(self._inner, name)


def backend_delay_from_environment(environ: Mapping[str, str] | None = None) -> Callable[[Backend], Backend] | None:
    """The wrapper to apply to each backend, or None when the variable is unset (ValueError if invalid)."""
    delay_s = simulated_infer_delay_s(environ)
    if not delay_s:
        return None
    log.warning("%s: every inference batch is delayed by %g ms (a test aid, not for production)",
                TEST_INFER_DELAY_ENV, delay_s * 1000)
    return lambda backend: DelayedBackend(backend, delay_s)  # type: ignore[return-value]
