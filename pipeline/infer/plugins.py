"""The inference back-end plug-ins: one light declaration module per backend (its key, its
settings model, the module that implements it). The config schema (`model.backend`, and a
`model.<key>:` section per backend with settings) and the registry behind `create_backend` are
both built from BACKEND_PLUGINS, so they cannot disagree. Adding a backend: write its
`config.py` (BACKEND_KEY, IMPLEMENTATION, SETTINGS) and list it here.

Import cost: pydantic only (no numpy, no runtime), because `pipeline.config` imports this.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from pipeline.config.base import StrictModel
from pipeline.infer.onnxruntime import config as onnxruntime_plugin
from pipeline.infer.tensorrt import config as tensorrt_plugin


@dataclass(frozen=True)
class BackendPlugin:
    key: str  # the value of model.backend, and the name of its settings section under model:
    settings: type[StrictModel]
    implementation: str  # the module whose import registers the Backend class (lazily imported)

    @classmethod
    def declared_by(cls, module: ModuleType) -> "BackendPlugin":
        return cls(module.BACKEND_KEY, module.SETTINGS, module.IMPLEMENTATION)


BACKEND_PLUGINS: tuple[BackendPlugin, ...] = tuple(
    BackendPlugin.declared_by(m) for m in (onnxruntime_plugin, tensorrt_plugin))
BACKEND_KEYS: tuple[str, ...] = tuple(p.key for p in BACKEND_PLUGINS)


def backend_plugin(key: str) -> BackendPlugin:
    for plugin in BACKEND_PLUGINS:
        if plugin.key == key:
            return plugin
    raise ValueError(f"model.backend: unknown backend {key!r}; known: {', '.join(BACKEND_KEYS)}")
