"""Command line: pipeline run | check | subscribe | eval | demo.

Exit codes: 0 success, 1 runtime failure at startup (model, bind), 2 bad configuration or usage.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from pipeline.config import ConfigError, PipelineConfig, load_config

log = logging.getLogger("pipeline")

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2


def bundled_demo_config() -> Path:
    """configs/demo.yaml of the checkout this package was installed from (pip install -e . or in place)."""
    return Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def _load(path: str | None) -> PipelineConfig:
    cfg_path = Path(path) if path else bundled_demo_config()
    if path is None and not cfg_path.is_file():
        raise ConfigError(f"{cfg_path}: bundled demo config not found (install from a checkout with pip install -e .)")
    return load_config(cfg_path)


def _install_stop_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        stop.set()  # only set the Event: the supervisor loop does the shutdown

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.daemon import Daemon, DaemonOptions
    from pipeline.metrics_http import MetricsServer

    cfg = _load(args.config)
    stop = threading.Event()
    _install_stop_signals(stop)
    options = DaemonOptions(status_interval_s=args.status_interval,
                            wait_for_subscribers=args.wait_for_subscribers,
                            wait_for_subscribers_timeout_s=args.wait_timeout)
    daemon = Daemon(cfg, options)
    metrics_server = None
    try:
        if cfg.metrics.bind:
            metrics_server = MetricsServer(cfg.metrics.bind, daemon.metrics)
        daemon.start()
    except (OSError, ValueError, RuntimeError) as exc:
        if metrics_server:
            metrics_server.close()
        print(f"pipeline: cannot start: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    try:
        return daemon.run(stop)
    finally:
        if metrics_server:
            metrics_server.close()


def cmd_check(args: argparse.Namespace) -> int:
    import yaml

    from pipeline.sources.base import redact_url

    cfg = _load(args.config)
    data = cfg.model_dump(mode="json")
    for cam in data["cameras"]:
        cam["url"] = redact_url(cam["url"])
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    print(f"# ok: {len(cfg.cameras)} camera(s)", file=sys.stderr)
    return EXIT_OK


def cmd_subscribe(args: argparse.Namespace) -> int:
    from pipeline.publish.messages import MessageError
    from pipeline.publish.subscriber import Subscriber, SubscriberConnectError, format_message_line

    stop = threading.Event()
    _install_stop_signals(stop)
    kinds = tuple(args.kind) if args.kind else ("det", "status")
    received = 0
    try:
        sub = Subscriber(args.url, camera=args.camera, kinds=kinds)
    except (SubscriberConnectError, ValueError) as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    with sub:
        while not stop.is_set() and (args.count is None or received < args.count):
            try:
                got = sub.recv(timeout=0.2)
            except MessageError as exc:  # a foreign or malformed message: say so, keep listening
                print(f"pipeline: skipped: {exc}", file=sys.stderr)
                continue
            if got is None:
                continue
            print(format_message_line(*got), flush=True)
            received += 1
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.eval_run import run_evaluation

    cfg = _load(args.config)
    truths: dict[str, str] = {}
    for item in args.truth:
        cam, sep, path = item.partition("=")
        if not sep:
            print(f"pipeline eval: --truth {item!r}: expected CAMERA=FILE", file=sys.stderr)
            return EXIT_CONFIG
        truths[cam] = path
    unknown = set(truths) - {c.id for c in cfg.cameras}
    if unknown:
        print(f"pipeline eval: --truth names unknown camera(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return EXIT_CONFIG
    scores = run_evaluation(cfg, truths, iou_threshold=args.iou)
    for s in scores:
        print(s.line())
    if args.json:
        Path(args.json).write_text(json.dumps([s.__dict__ for s in scores], indent=2))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    return run_demo(args.config or str(bundled_demo_config()), seconds=args.seconds)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pipeline", description="Multi-camera video analytics daemon.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the daemon (no CONFIG: the bundled demo)")
    r.add_argument("config", nargs="?")
    r.add_argument("--status-interval", type=float, default=5.0, metavar="S",
                   help="seconds between per-camera status lines (0: off)")
    r.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                   help="hold the cameras until N subscribers are connected (so none misses the start)")
    r.add_argument("--wait-timeout", type=float, default=10.0, metavar="S")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="validate a config and print it resolved")
    c.add_argument("config")
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("subscribe", help="print published messages, one JSON object per line")
    s.add_argument("url")
    s.add_argument("--camera")
    s.add_argument("--count", type=int)
    s.add_argument("--kind", action="append", choices=["det", "status"])
    s.set_defaults(func=cmd_subscribe)

    e = sub.add_parser("eval", help="run on files and score published detections against ground truth")
    e.add_argument("config")
    e.add_argument("--truth", action="append", required=True, metavar="CAMERA=FILE")
    e.add_argument("--iou", type=float, default=0.5)
    e.add_argument("--json", metavar="OUT")
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("demo", help="run the bundled demo: daemon + subscriber + status lines")
    d.add_argument("config", nargs="?")
    d.add_argument("--seconds", type=float, default=60.0, help="stop after this long at the latest")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from pipeline.logs import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
