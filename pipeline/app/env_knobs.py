"""Environment variables that tune or test the daemon (A/B and test aids, never configuration)."""
from __future__ import annotations

import os
from typing import Mapping


def seconds_from_ms_env(name: str, low_ms: float, high_ms: float,
                        environ: Mapping[str, str] | None = None) -> float | None:
    """`name` read as milliseconds, in seconds; None when unset or empty; ValueError (one line naming
    the variable and the range) when it is not a number from low_ms to high_ms."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return None
    try:
        ms = float(raw)
    except ValueError:
        ms = float("nan")
    if not low_ms <= ms <= high_ms:  # NaN fails too
        raise ValueError(f"{name}={raw!r}: expected milliseconds from {low_ms:g} to {high_ms:g}")
    return ms / 1000.0
