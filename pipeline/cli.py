"""Command line: pipeline run | check | subscribe | curve-keys | eval | demo | bench | build-engine | relay
| bridge.

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


def unused_terminating_signals() -> list[int]:
    """Signals whose default action ends the process silently and that we have no use for (a stray
    `kill -USR1`, an alarm): they stop the daemon like SIGTERM, with a log line. Core-dumping ones
    (SIGQUIT, SIGABRT, SIGSEGV...) keep their default: they are for debugging and crashes."""
    names = ("SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGSTKFLT")
    found = [getattr(signal, n) for n in names if hasattr(signal, n)]
    if hasattr(signal, "SIGRTMIN"):  # real-time signals end the process by default too
        found += [n for n in range(signal.SIGRTMIN, signal.SIGRTMAX + 1) if n in signal.valid_signals()]
    return found


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # SIGRTMIN+n has no enum member
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"


def _install_stop_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        if signum not in (signal.SIGINT, signal.SIGTERM):
            log.warning("received %s: stopping as for SIGTERM", signal_name(signum))
        stop.set()  # only set the Event: the supervisor loop does the shutdown

    for signum in (signal.SIGINT, signal.SIGTERM, *unused_terminating_signals()):
        signal.signal(signum, handler)


def _install_reload_signal(reload_requested: threading.Event) -> None:
    """SIGHUP (systemctl reload): only set the Event; the supervisor loop re-reads the config."""
    signal.signal(signal.SIGHUP, lambda _signum, _frame: reload_requested.set())


def _raise_fd_limit(cfg: PipelineConfig) -> None:
    from pipeline.app.resource_limits import fd_limit_warning, raise_fd_limit

    old, new = raise_fd_limit(cfg)
    if new != old:
        log.info("open-files limit raised from %d to %d for %d camera(s)", old, new, len(cfg.cameras))
    warning = fd_limit_warning(cfg)
    if warning:
        log.warning("%s", warning)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.app.daemon import Daemon, DaemonOptions
    from pipeline.app.slow_inference import backend_delay_from_environment
    from pipeline.observe.http import MetricsServer
    from pipeline.app.systemd_notify import SystemdNotifier

    stop, reload_requested = threading.Event(), threading.Event()
    _install_stop_signals(stop)
    _install_reload_signal(reload_requested)  # before anything slow: SIGHUP's default action kills
    notifier = SystemdNotifier.from_environment()
    try:
        cfg = _load(args.config)
    except ConfigError as exc:
        notifier.status(f"bad config: {exc}")
        raise
    _raise_fd_limit(cfg)
    metrics_server = None
    try:
        options = DaemonOptions(status_interval_s=args.status_interval,
                                wait_for_subscribers=args.wait_for_subscribers,
                                wait_for_subscribers_timeout_s=args.wait_timeout,
                                load_config=lambda: _load(args.config), notifier=notifier,
                                wrap_backend=backend_delay_from_environment())  # a test aid; None unless set
        daemon = Daemon(cfg, options)
        if cfg.metrics.bind:
            metrics_server = MetricsServer(cfg.metrics.bind, daemon.metrics)
        daemon.start()
    except (OSError, ValueError, RuntimeError) as exc:
        if metrics_server:
            metrics_server.close()
        notifier.status(f"cannot start: {exc}")
        print(f"pipeline: cannot start: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    try:
        return daemon.run(stop, reload_requested)
    finally:
        if metrics_server:
            metrics_server.close()
        notifier.close()


def cmd_check(args: argparse.Namespace) -> int:
    import yaml

    from pipeline.infer.model_spec import ModelError, describe_model

    cfg = _load(args.config)
    text = yaml.safe_dump(_redacted(cfg.model_dump(mode="json")), sort_keys=False)
    sys.stdout.write(_hide_secret_values(text, Path(args.config).read_text()))
    _warn_if_fd_limit_low(cfg)
    if _uses_gpus(cfg):
        from pipeline.app.gpu_assignment import AssignmentError, assignment_for
        from pipeline.gpu.runtime import visible_gpu_count

        try:
            assignment = assignment_for(cfg, visible_gpu_count())
        except AssignmentError as exc:
            print(f"{args.config}: gpus: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        print("# cameras by GPU (expected load; the daemon runs the first GPU's path for all of them "
              "until per-GPU pipelines land, docs/operations.md):", file=sys.stderr)
        for line in assignment.lines():
            print(f"#   {line}", file=sys.stderr)
    try:  # what the model is, as the daemon will resolve it (pipeline/infer/model_spec.py)
        print(describe_model(cfg.model, cfg.scheduler.max_batch), file=sys.stderr)
    except ModelError as exc:
        print(f"pipeline check: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"# ok: {len(cfg.cameras)} camera(s)", file=sys.stderr)
    return EXIT_OK


def _uses_gpus(cfg: PipelineConfig) -> bool:
    return (cfg.decode.device == "gpu" or cfg.preprocess.device == "gpu" or cfg.gpus is not None
            or any(c.gpu is not None for c in cfg.cameras))


def _warn_if_fd_limit_low(cfg: PipelineConfig) -> None:
    from pipeline.app.resource_limits import fd_limit_warning

    warning = fd_limit_warning(cfg)
    if warning:
        print(f"# warning: {warning}", file=sys.stderr)


def _redacted(value: object) -> object:
    """Every URL anywhere in the resolved config (camera urls, calibration sources that name a
    camera, ...) with its password and credential parameters replaced by ***."""
    from pipeline.observe.redaction import redact_url

    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


MIN_HIDDEN_SECRET_CHARS = 3  # shorter values would be replaced all over the output


def _hide_secret_values(text: str, config_text: str) -> str:
    """`${secret:NAME}` values never appear in clear: each is shown as the reference again."""
    import os

    from pipeline.config import ENV_REF

    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return text
    for m in ENV_REF.finditer(config_text):
        name = m.group("secret")
        if not name or "/" in name:
            continue
        try:
            value = (Path(directory) / name).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError):
            continue
        if len(value) >= MIN_HIDDEN_SECRET_CHARS:
            text = text.replace(value, f"${{secret:{name}}}")
    return text


def cmd_subscribe(args: argparse.Namespace) -> int:
    from pipeline.publish.messages import MessageError
    from pipeline.publish.subscriber import (CurveClientKeys, Subscriber, SubscriberConnectError,
                                             format_message_line)

    stop = threading.Event()
    _install_stop_signals(stop)
    kinds = tuple(args.kind) if args.kind else ("det", "status", "evt")
    received = 0
    if bool(args.curve_server_key) != bool(args.curve_client_key):
        print("pipeline subscribe: --curve-server-key and --curve-client-key go together", file=sys.stderr)
        return EXIT_CONFIG
    try:
        curve = (CurveClientKeys.from_files(args.curve_server_key, args.curve_client_key)
                 if args.curve_server_key else None)
        sub = Subscriber(args.url, camera=args.camera, kinds=kinds, curve=curve)
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


def cmd_curve_keys(args: argparse.Namespace) -> int:
    import os

    import zmq.auth

    out = Path(args.directory)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(out, args.name)
    os.chmod(secret, 0o600)
    print(f"public key (give to the other side): {public}")
    print(f"secret key (keep here, mode 0600):   {secret}")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.tools.evaluate.command import run_full_evaluation

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
    try:
        results = run_full_evaluation(cfg, truths, iou_threshold=args.iou)
    except ValueError as exc:  # a truth file without identities, or a bad line in it
        print(f"pipeline eval: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for r in results:
        for line in r.lines():
            print(line)
    if args.json:
        Path(args.json).write_text(json.dumps([{**r.detection.__dict__,
                                                 "tracking": r.tracking.__dict__ if r.tracking else None,
                                                 "counts": r.counts} for r in results], indent=2))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.tools.demo import run_demo

    return run_demo(args.config or str(bundled_demo_config()), seconds=args.seconds)


def cmd_build_engine(args: argparse.Namespace) -> int:
    from pipeline.tools.build_engine import build_engine_command

    return build_engine_command(_load(args.config), args.config, gpu_index=args.gpu, force=args.force,
                                check_only=args.check)


def cmd_bench(args: argparse.Namespace) -> int:
    from pipeline.tools.bench.command import bench_command

    return bench_command(args, _load(args.config))


def cmd_relay(args: argparse.Namespace) -> int:
    from pipeline.relay.command import run_relay

    stop = threading.Event()
    _install_stop_signals(stop)
    return run_relay(args, stop)


def cmd_bridge(args: argparse.Namespace) -> int:
    from pipeline.bridge.command import run_bridge

    stop = threading.Event()
    _install_stop_signals(stop)
    return run_bridge(args.config, stop)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pipeline", description="Multi-camera video analytics daemon.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", default="plain", choices=["plain", "json"],
                   help="one line per event on stderr: plain text or one JSON object")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the daemon (no CONFIG: the bundled demo)")
    r.add_argument("config", nargs="?")
    r.add_argument("--status-interval", type=float, default=5.0, metavar="S",
                   help="seconds between per-camera status lines (0: off)")
    r.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                   help="hold the cameras until N subscribers are connected (so none misses the start)")
    r.add_argument("--wait-timeout", type=float, default=10.0, metavar="S")
    r.add_argument("--log-format", choices=["plain", "json"], default=argparse.SUPPRESS,
                   help="same as the global --log-format")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="validate a config and print it resolved")
    c.add_argument("config")
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("subscribe", help="print published messages, one JSON object per line")
    s.add_argument("url")
    s.add_argument("--camera")
    s.add_argument("--count", type=int)
    s.add_argument("--kind", action="append", choices=["det", "status", "evt"])
    s.add_argument("--curve-server-key", metavar="FILE", help="CURVE: the publisher's public key file (.key)")
    s.add_argument("--curve-client-key", metavar="FILE",
                   help="CURVE: this subscriber's secret key file (.key_secret); its .key must be authorized")
    s.set_defaults(func=cmd_subscribe)

    k = sub.add_parser("curve-keys", help="make a ZeroMQ CURVE key pair: DIR/NAME.key and DIR/NAME.key_secret")
    k.add_argument("directory")
    k.add_argument("name")
    k.set_defaults(func=cmd_curve_keys)

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

    be = sub.add_parser("build-engine", help="build (or verify) the TensorRT engine of a config ahead of time")
    be.add_argument("config")
    be.add_argument("--gpu", type=int, default=0, metavar="N", help="CUDA device to build for (default 0)")
    be.add_argument("--force", action="store_true", help="rebuild even if a valid cached engine exists")
    be.add_argument("--check", action="store_true", help="only verify the cached engine; never build (exit 1 if none)")
    be.set_defaults(func=cmd_build_engine)

    from pipeline.tools.bench.cli import add_arguments as add_bench_arguments  # a light module: no PyAV, no numpy

    b = sub.add_parser("bench", help="measure decode, preprocess, inference and end-to-end ceilings in one run")
    add_bench_arguments(b)
    b.set_defaults(func=cmd_bench)

    from pipeline.relay.command import add_arguments as add_relay_arguments

    rl = sub.add_parser("relay", help="fan in several daemons behind one address (ZeroMQ XSUB/XPUB proxy)")
    add_relay_arguments(rl)
    rl.set_defaults(func=cmd_relay)

    br = sub.add_parser("bridge", help="forward published messages to MQTT and Redis Streams (its own config file)")
    br.add_argument("config")
    br.set_defaults(func=cmd_bridge)
    return p


def main(argv: list[str] | None = None) -> int:
    from pipeline.observe.logs import configure_logging
    from pipeline.sources.readers import exit_now_if_readers_blocked

    args = build_parser().parse_args(argv)
    repeats = configure_logging(args.log_level, args.log_format)
    try:
        code = args.func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        code = EXIT_CONFIG
    except KeyboardInterrupt:
        code = 130
    finally:
        repeats.flush()  # counts of suppressed repeats still pending are reported before exit
    exit_now_if_readers_blocked(code)  # a camera reader still inside FFmpeg would crash finalization
    return code


if __name__ == "__main__":
    sys.exit(main())
