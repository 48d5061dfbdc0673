"""Logging setup: one line per event to stderr (journald picks it up), plain text or JSON.

Two filters sit on the handler, so every record passes them, the libraries' records included:
- RepeatLimiter: a flapping camera must not flood the journal. Records with the same logger,
  level, message template and subject (the first string argument: the camera id in
  `camera %s: ...` messages) pass `per_window` times per `window_s`; the rest are counted and
  reported as one "suppressed K similar messages" line when the window ends. Periodic reports
  (status lines) pass `extra=NOT_RATE_LIMITED`.
- CredentialRedactor: `scheme://user:password@host` anywhere in a message or traceback
  becomes `scheme://user:***@host`.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from pipeline.observe.redaction import redact_url

LOG_FORMATS = ("plain", "json")
REPEATS_PER_WINDOW = 10
REPEAT_WINDOW_S = 60.0

NOT_RATE_LIMITED = {"rate_limit": False}  # `extra=` for periodic reports: their interval limits them
_SUBJECT = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # an id-like first argument (a camera id) splits the key
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact_credentials(text: str) -> str:
    """Apply redact_url to every URL in free text."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def _utc_timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class CredentialRedactor(logging.Filter):
    """Renders the message (and traceback) once, with credentials removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_credentials(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_credentials(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_credentials(record.stack_info)
        return True


@dataclass
class _Window:
    started: float
    passed: int
    suppressed: int
    record: logging.LogRecord  # the window's first record: the summary names its logger and level


class RepeatLimiter(logging.Filter):
    """Rate limit per (logger, level, template, subject). `emit` writes the summary records
    (the handler's own `handle`, so they are formatted like everything else)."""

    def __init__(self, emit: Callable[[logging.LogRecord], object], per_window: int = REPEATS_PER_WINDOW,
                 window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 4096) -> None:
        super().__init__()
        self._emit = emit
        self.per_window = per_window
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._windows: OrderedDict[tuple[object, ...], _Window] = OrderedDict()
        self._next_sweep = clock() + window_s

    @staticmethod
    def key(record: logging.LogRecord) -> tuple[object, ...]:
        args = record.args if isinstance(record.args, tuple) else ()
        subject = args[0] if args and isinstance(args[0], str) and _SUBJECT.fullmatch(args[0]) else None
        return (record.name, record.levelno, str(record.msg), subject)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "suppressed_summary", False) or getattr(record, "rate_limit", True) is False:
            return True
        now = self._clock()
        key = self.key(record)
        summaries: list[logging.LogRecord] = []
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.started >= self.window_s:
                if window.suppressed:
                    summaries.append(self._summary(window))
                window = None
            if window is None:
                window = self._windows[key] = _Window(now, 0, 0, record)
                self._windows.move_to_end(key)
                while len(self._windows) > self._max_keys:
                    _, old = self._windows.popitem(last=False)
                    if old.suppressed:
                        summaries.append(self._summary(old))
            if now >= self._next_sweep:
                summaries.extend(self._sweep(now))
            allow = window.passed < self.per_window
            if allow:
                window.passed += 1
            else:
                window.suppressed += 1
        for summary in summaries:  # outside the lock: emitting re-enters filter()
            self._emit(summary)
        return allow

    def flush(self) -> None:
        """Report every pending suppression now (e.g. at shutdown)."""
        with self._lock:
            summaries = [self._summary(w) for w in self._windows.values() if w.suppressed]
            self._windows.clear()
        for summary in summaries:
            self._emit(summary)

    def _sweep(self, now: float) -> list[logging.LogRecord]:
        """Windows that ended without a later record still get their summary (lock held)."""
        self._next_sweep = now + self.window_s / 4
        ended = [k for k, w in self._windows.items() if now - w.started >= self.window_s]
        out = []
        for k in ended:
            w = self._windows.pop(k)
            if w.suppressed:
                out.append(self._summary(w))
        return out

    def _summary(self, window: _Window) -> logging.LogRecord:
        first = window.record
        text = redact_credentials(first.getMessage())
        summary = logging.LogRecord(first.name, first.levelno, first.pathname, first.lineno,
                                    "suppressed %d similar messages in %.0fs like: %s",
                                    (window.suppressed, self.window_s, text), None)
        summary.suppressed_summary = True
        summary.suppressed = window.suppressed
        return summary


class PlainFormatter(logging.Formatter):
    """`2024-05-01T12:00:00.123Z WARNING pipeline.app.daemon: message | traceback lines`."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        line = f"{_utc_timestamp(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_text:
            line += " | " + record.exc_text
        if record.stack_info:
            line += " | " + record.stack_info
        return _one_line(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ thread, exception, suppressed)."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        doc: dict[str, object] = {"time": _utc_timestamp(record.created), "level": record.levelname,
                                  "logger": record.name, "message": record.getMessage(),
                                  "thread": record.threadName}
        if record.exc_text:
            doc["exception"] = record.exc_text
        if getattr(record, "suppressed", None):
            doc["suppressed"] = record.suppressed
        return json.dumps(doc, ensure_ascii=False, default=str)


def _one_line(text: str) -> str:
    return " | ".join(part for part in text.splitlines() if part.strip()) if "\n" in text else text


def configure_logging(level: str = "INFO", log_format: str = "plain",
                      per_window: int = REPEATS_PER_WINDOW, window_s: float = REPEAT_WINDOW_S) -> RepeatLimiter:
    """Replace the root handlers with one stderr handler; returns its RepeatLimiter (for flush())."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else PlainFormatter())
    # The limiter goes first: it keys on the unrendered template and arguments. The records it
    # keeps for summaries are ones it let through, so the redactor has cleaned them as well.
    limiter = RepeatLimiter(handler.handle, per_window, window_s)
    handler.addFilter(limiter)
    handler.addFilter(CredentialRedactor())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return limiter
