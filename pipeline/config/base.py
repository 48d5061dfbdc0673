"""The base of every config section: unknown keys are errors, values are frozen."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(Exception):
    """A config problem, already formatted as one line naming file, line and path."""

class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
