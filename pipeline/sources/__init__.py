"""Camera sources: files, network streams and generated frames (see docs/architecture.md).

The kinds are declared in pipeline/sources/plugins.py; `create_source` imports a kind's module
when a camera of that kind is first created, so importing this package costs nothing (the config
schema imports the light declarations under it).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Ending": "pipeline.sources.base", "Source": "pipeline.sources.base",
    "create_source": "pipeline.sources.base", "register_source": "pipeline.sources.base",
    "FileSource": "pipeline.sources.file", "NetworkSource": "pipeline.sources.network",
    "SyntheticSource": "pipeline.sources.synthetic", "parse_synthetic_url": "pipeline.sources.synthetic",
    "SampleError": "pipeline.sources.sampling", "sample_pictures": "pipeline.sources.sampling",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # PEP 562: the names above, imported on first use
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.sources' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
