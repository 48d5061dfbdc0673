"""Camera sources: files, network streams and generated frames (see docs/architecture.md).

Importing the package registers every built-in source type with `create_source`.
"""
from pipeline.sources.base import (
    Ending,
    Source,
    create_source,
    redact_text,
    redact_url,
    register_source,
)
from pipeline.sources.file import FileSource
from pipeline.sources.network import NetworkSource
from pipeline.sources.synthetic import SyntheticSource, parse_synthetic_url

__all__ = [
    "Ending",
    "FileSource",
    "NetworkSource",
    "Source",
    "SyntheticSource",
    "create_source",
    "parse_synthetic_url",
    "redact_text",
    "redact_url",
    "register_source",
]
