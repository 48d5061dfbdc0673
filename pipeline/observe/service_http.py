"""/metrics and /healthz for the side processes (`pipeline relay`, `pipeline bridge`): their own
Prometheus registry and a health function, instead of the daemon's Metrics. The server, the handler
and the hostile-client bounds are the daemon's (observe/http.py): at most MAX_CONNECTIONS at once,
idle clients dropped after CLIENT_TIMEOUT_S."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry

from pipeline.observe import http
from pipeline.observe.http import HttpEndpoint, metrics_handler

Health = Callable[[], tuple[bool, str]]  # (healthy, one line per part saying why)


class ServiceHttpServer(HttpEndpoint):
    def __init__(self, bind: str, registry: CollectorRegistry, health: Health, what: str) -> None:
        def health_body() -> tuple[bool, bytes]:
            ok, text = health()
            return ok, f"{'ok' if ok else 'unhealthy'}\n{text}\n".encode()

        super().__init__(bind, metrics_handler(registry, health_body, timeout=http.CLIENT_TIMEOUT_S), what,
                         "service-http")
