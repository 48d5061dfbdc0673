"""`pipeline bridge CONFIG`: runs a Bridge until SIGINT/SIGTERM. Exit 2: bad config; 1: a sink that
cannot work (credentials, TLS, unknown host) or the source cannot be used; 0: stopped."""
from __future__ import annotations

import logging
import sys
import threading

log = logging.getLogger("pipeline.bridge")
EXIT_OK, EXIT_RUNTIME = 0, 1


def run_bridge(config_path: str, stop: threading.Event) -> int:
    import zmq

    from pipeline.bridge.service import Bridge, BridgeSourceError
    from pipeline.bridge.sinks import SinkError
    from pipeline.config.bridge import load_bridge_config

    cfg = load_bridge_config(config_path)  # ConfigError: the caller prints it, exit 2
    context = zmq.Context()
    try:
        bridge = Bridge(cfg, context)
    except SinkError as exc:
        print(f"pipeline bridge: {exc}", file=sys.stderr)
        context.term()
        return EXIT_RUNTIME
    fatal = bridge.connect_sinks()
    if fatal:
        for line in fatal:
            print(f"pipeline bridge: {line}", file=sys.stderr)
        for sink in bridge.sinks.values():
            sink.close()
        context.term()
        return EXIT_RUNTIME
    server = None
    try:
        if cfg.metrics.bind:
            from pipeline.observe.service_http import ServiceHttpServer

            server = ServiceHttpServer(cfg.metrics.bind, bridge.metrics.registry, bridge.health, "bridge metrics.bind")
        bridge.start()
        log.info("bridge: %s -> %s", cfg.source.url, ", ".join(s.label for s in bridge.sinks.values()))
        bridge.run(stop)
    except (OSError, ValueError, BridgeSourceError) as exc:
        print(f"pipeline bridge: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        bridge.close()
        if server is not None:
            server.close()
        context.term()
    return EXIT_OK
