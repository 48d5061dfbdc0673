"""The camera source plug-ins: each kind's key (a camera's `type:`), how `type: auto` recognises
its URLs, the camera options only it reads, and the module that implements it. The config schema
(`cameras[].type`) and the registry behind `create_source` are both built from SOURCE_PLUGINS, so
they cannot disagree. Adding a kind: declare it here, write the Source with that `type_key`.

Import cost: nothing beyond the standard library, because `pipeline.config` imports this.
"""
from __future__ import annotations

from dataclasses import dataclass

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://", "srt://")


@dataclass(frozen=True)
class SourcePlugin:
    key: str  # the camera's resolved `type:`
    implementation: str  # the module whose import registers the Source class (lazily imported)
    url_prefixes: tuple[str, ...]  # `type: auto` picks this kind for URLs starting so (case-insensitive)
    options: frozenset[str] = frozenset()  # camera keys that only some kinds read (e.g. loop)

    def claims(self, url: str) -> bool:
        return url.lower().startswith(self.url_prefixes)


SOURCE_PLUGINS: tuple[SourcePlugin, ...] = (
    SourcePlugin("synthetic", "pipeline.sources.synthetic", ("synthetic:",)),
    SourcePlugin("network", "pipeline.sources.network", NETWORK_SCHEMES, frozenset({"timeout_s"})),
    # anything else is a path; timeout_s: how long an open may block (a FIFO, a hung mount)
    SourcePlugin("file", "pipeline.sources.file", (), frozenset({"loop", "timeout_s"})),
)
SOURCE_KEYS: tuple[str, ...] = tuple(p.key for p in SOURCE_PLUGINS)
FALLBACK_KEY = "file"


def source_plugin(key: str) -> SourcePlugin:
    for plugin in SOURCE_PLUGINS:
        if plugin.key == key:
            return plugin
    raise ValueError(f"unknown camera type {key!r}; known: {', '.join(SOURCE_KEYS)}")


def kind_for_url(url: str) -> str:
    """What `type: auto` resolves to."""
    return next((p.key for p in SOURCE_PLUGINS if p.claims(url)), FALLBACK_KEY)


def readers_of(option: str) -> tuple[str, ...]:
    """The kinds that read this camera option; () when every kind does."""
    return tuple(p.key for p in SOURCE_PLUGINS if option in p.options)
