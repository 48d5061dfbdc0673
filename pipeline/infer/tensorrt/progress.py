"""Build progress and TensorRT's log, routed to plain Python objects.

`PhaseLines` turns the builder's phase/step callbacks into one line per event worth showing
(phase start, phase end, and step counts at most every `min_interval_s`). `progress_monitor`
wraps it in the installed TensorRT's IProgressMonitor (TensorRT >= 10.0); without one the
builder still reports its own coarse phases through the same PhaseLines.

`python_logger` gives TensorRT an ILogger that writes to Python logging and remembers the last
error, so a failed build can say why in one line.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)


class PhaseLines:
    """Indented progress lines: `[ 3/10] Building engine > Timing layers`."""

    def __init__(self, write: Callable[[str], None], min_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._phases: dict[str, tuple[str | None, int]] = {}  # name -> (parent, steps)
        self._last_line_at = float("-inf")
        self.cancel = threading.Event()  # set it to make the builder stop at its next step

    def _path(self, name: str) -> str:
        parts, seen = [name], {name}
        parent = self._phases.get(name, (None, 0))[0]
        while parent is not None and parent not in seen:
            parts.append(parent)
            seen.add(parent)
            parent = self._phases.get(parent, (None, 0))[0]
        return " > ".join(reversed(parts))

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        self._phases[phase_name] = (parent_phase, num_steps)
        if parent_phase is None or num_steps > 1:  # leaf phases of one step are noise
            self._emit(f"[start] {self._path(phase_name)}" + (f" ({num_steps} steps)" if num_steps > 1 else ""))

    def step_complete(self, phase_name: str, step: int) -> bool:
        _, steps = self._phases.get(phase_name, (None, 0))
        now = self._clock()
        if steps > 1 and now - self._last_line_at >= self._min_interval_s:
            self._emit(f"[{step + 1:>{len(str(steps))}}/{steps}] {self._path(phase_name)}")
        return not self.cancel.is_set()

    def phase_finish(self, phase_name: str) -> None:
        parent, steps = self._phases.get(phase_name, (None, 0))
        if parent is None or steps > 1:
            self._emit(f"[done]  {self._path(phase_name)}")
        self._phases.pop(phase_name, None)

    def _emit(self, line: str) -> None:
        self._last_line_at = self._clock()
        self._write(line)


def progress_monitor(trt: Any, sink: PhaseLines) -> Any | None:
    """An IProgressMonitor forwarding to `sink`, or None if this TensorRT has none."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class _Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            try:
                sink.phase_start(phase_name, parent_phase, num_steps)
            except Exception:  # noqa: BLE001 - an exception must never cross into TensorRT's C++
                log.debug("progress display failed", exc_info=True)

        def step_complete(self, phase_name: str, step: int) -> bool:
            try:
                return sink.step_complete(phase_name, step)
            except Exception:  # noqa: BLE001
                log.debug("progress display failed", exc_info=True)
                return True

        def phase_finish(self, phase_name: str) -> None:
            try:
                sink.phase_finish(phase_name)
            except Exception:  # noqa: BLE001
                log.debug("progress display failed", exc_info=True)

    return _Monitor()


_LEVELS = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING,
           "INFO": logging.DEBUG, "VERBOSE": logging.DEBUG}  # TensorRT's INFO is chatty: debug for us


# TensorRT keeps the first logger it is given for the whole process and ignores later ones (it
# warns "The logger passed into createInferBuilder differs from one already registered"), so
# there is exactly one of ours per TensorRT module, mirroring TensorRT's own global.
_PROCESS_LOGGERS: dict[int, tuple[Any, Any]] = {}  # id(module) -> (module kept alive, logger)


def python_logger(trt: Any) -> Any:
    """The process's trt.ILogger writing to the "pipeline.tensorrt" Python logger; `.last_error`
    keeps the most recent error text for one-line failure messages."""
    entry = _PROCESS_LOGGERS.get(id(trt))
    if entry is None:
        entry = _PROCESS_LOGGERS[id(trt)] = (trt, _make_logger(trt, logging.getLogger("pipeline.tensorrt")))
    return entry[1]


def _make_logger(trt: Any, target: logging.Logger) -> Any:
    base = trt.ILogger

    class _Logger(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.last_error = ""

        def log(self, severity: Any, msg: str) -> None:
            level = _LEVELS.get(getattr(severity, "name", str(severity)).split(".")[-1], logging.INFO)
            if level >= logging.ERROR:
                self.last_error = " ".join(str(msg).split())
            target.log(level, "TensorRT: %s", msg)

    return _Logger()
