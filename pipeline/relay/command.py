"""`pipeline relay --from URL [--from URL ...] --bind URL`: runs a Relay until SIGINT/SIGTERM.
The parser part imports nothing heavy: `pipeline --help` stays fast."""
from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

log = logging.getLogger("pipeline.relay")
EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="upstreams", action="append", required=True, metavar="URL",
                   help="a daemon's publish address (repeat for each daemon)")
    p.add_argument("--bind", required=True, metavar="URL", help="where subscribers connect, e.g. tcp://0.0.0.0:6000")
    p.add_argument("--hwm", type=int, default=10000, metavar="N",
                   help="high-water mark (messages) on both sides (default 10000)")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve /metrics and /healthz here")
    p.add_argument("--curve-server-key", action="append", default=[], metavar="FILE",
                   help="CURVE towards the daemons: a daemon's public key (.key); once for all, or once per --from")
    p.add_argument("--curve-client-key", metavar="FILE",
                   help="CURVE towards the daemons: the relay's secret key (.key_secret); its .key must be authorized there")
    p.add_argument("--curve-secret-key", metavar="FILE",
                   help="CURVE towards the subscribers: the relay's server secret key (.key_secret)")
    p.add_argument("--curve-clients", metavar="DIR", help="CURVE towards the subscribers: their public keys (*.key)")


def run_relay(args: argparse.Namespace, stop: threading.Event) -> int:
    import zmq
    from prometheus_client import CollectorRegistry, Gauge

    from pipeline.config import CurveConfig
    from pipeline.publish.publisher import PublishCurveError
    from pipeline.relay.relay import Relay, RelayError, upstream_curves

    if not 0 <= args.hwm <= 10_000_000:
        print("pipeline relay: --hwm must be in 0..10000000", file=sys.stderr)
        return EXIT_CONFIG
    if bool(args.curve_secret_key) != bool(args.curve_clients):
        print("pipeline relay: --curve-secret-key and --curve-clients go together", file=sys.stderr)
        return EXIT_CONFIG
    try:
        upstreams = upstream_curves(list(dict.fromkeys(args.upstreams)), args.curve_server_key,
                                    args.curve_client_key)
    except ValueError as exc:  # names the key file
        text = str(exc).removeprefix("subscribe: ").removeprefix("relay: ")
        print(f"pipeline relay: {text}", file=sys.stderr)
        return EXIT_CONFIG
    if args.curve_secret_key and not Path(args.curve_secret_key).is_file():
        print(f"pipeline relay: --curve-secret-key {args.curve_secret_key}: no such file", file=sys.stderr)
        return EXIT_CONFIG
    if args.curve_clients and not Path(args.curve_clients).is_dir():
        print(f"pipeline relay: --curve-clients {args.curve_clients}: no such directory", file=sys.stderr)
        return EXIT_CONFIG
    downstream = (CurveConfig(server_secret_key_file=Path(args.curve_secret_key),
                              authorized_clients_dir=Path(args.curve_clients)) if args.curve_secret_key else None)
    registry = CollectorRegistry()
    connected = Gauge("pipeline_relay_upstream_connected", "1 while the relay is connected to this daemon",
                      ["upstream"], registry=registry)
    for address in upstreams:
        connected.labels(address).set(0)
    context = zmq.Context()
    server = None
    try:
        relay = Relay(context, upstreams, args.bind, args.hwm, downstream,
                      on_upstream_change=lambda a, up: connected.labels(a).set(1 if up else 0))
    except (RelayError, PublishCurveError) as exc:
        text = str(exc).replace("publish.curve.server_secret_key_file", "relay --curve-secret-key")
        print(f"pipeline: {text}", file=sys.stderr)
        context.term()
        return EXIT_RUNTIME
    try:
        if args.metrics:
            from pipeline.observe.service_http import ServiceHttpServer

            def health() -> tuple[bool, str]:
                states = relay.upstream_connected
                lines = [f"{a}: {'connected' if up else 'not connected'}" for a, up in states.items()]
                return all(states.values()), "\n".join(lines)

            server = ServiceHttpServer(args.metrics, registry, health, "relay --metrics")
        relay.start()
        log.info("relay: %d daemon(s) -> %s", len(upstreams), relay.endpoint)
        stop.wait()
    except (OSError, ValueError) as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        if server is not None:
            server.close()
        relay.close()
        context.term()
    return EXIT_OK
