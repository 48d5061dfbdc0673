"""`pipeline relay`: an XSUB socket connected to every daemon, an XPUB socket bound for the
subscribers, and libzmq's own proxy (zmq.proxy_steerable) moving messages between them in C.

- Messages pass unchanged ([topic, JSON], camera and seq included), so a gap in seq seen behind the
  relay is a real loss somewhere on the way.
- Subscriptions pass upstream (the XPUB hands them to the proxy, the XSUB sends them to every
  daemon, and re-sends them to a daemon that reconnects), so topic filtering stays at the source.
- Queues are bounded by the HWMs on both sockets; ZeroMQ drops for a slow subscriber, never blocks
  the daemons (their publisher never waits either).
- CURVE: towards the daemons the relay is a CURVE client (its own key pair, each daemon's public
  key); towards the subscribers a CURVE server with a ZAP authenticator, as the daemon's publisher.
- A monitor on the XSUB side tells which daemons are connected: metrics and /healthz.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from pipeline.config import CurveConfig
from pipeline.publish.publisher import count_client_keys, load_server_secret_key
from pipeline.publish.subscriber import CurveClientKeys

log = logging.getLogger(__name__)

UPSTREAM_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
MONITOR_POLL_MS = 100
RECONNECT_IVL_MAX_MS = 2000  # a restarted daemon is found again within 2 s


class RelayError(RuntimeError):
    """Cannot start: one line naming the option and address, e.g. `relay --bind tcp://...: Address in use`."""


def _reason(exc: zmq.ZMQError) -> str:
    return zmq.strerror(exc.errno) if exc.errno else str(exc)


class Relay:
    """`Relay(context, upstreams, bind, hwm)`, then `start()`, `close()`. `upstreams` maps each
    daemon's address to its CURVE settings (None: plain)."""

    def __init__(self, context: zmq.Context, upstreams: dict[str, CurveClientKeys | None], bind: str,
                 high_water_mark: int = 10000, downstream_curve: CurveConfig | None = None,
                 on_upstream_change=None) -> None:
        if not upstreams:
            raise RelayError("relay: at least one --from address is needed")
        self._context = context
        self._on_upstream_change = on_upstream_change  # (address, connected: bool) -> None
        self.upstream_connected: dict[str, bool] = {u: False for u in upstreams}
        self._auth: ThreadAuthenticator | None = None
        self._sockets: list[zmq.Socket] = []
        try:
            self._frontend = self._socket(zmq.XSUB, high_water_mark)
            self._monitor = self._frontend.get_monitor_socket(UPSTREAM_EVENTS)
            self._sockets.append(self._monitor)
            self._frontend.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
            for address, curve in upstreams.items():
                if curve is not None:  # options apply to the connects that follow: one server key per daemon
                    self._frontend.curve_serverkey = curve.server_public_key
                    self._frontend.curve_publickey = curve.public_key
                    self._frontend.curve_secretkey = curve.secret_key
                try:
                    self._frontend.connect(address)
                except zmq.ZMQError as exc:
                    raise RelayError(f"relay --from {address}: {_reason(exc)}") from None
            self._backend = self._socket(zmq.XPUB, high_water_mark)
            if downstream_curve is not None:
                public, secret = load_server_secret_key(downstream_curve.server_secret_key_file)
                self._auth = ThreadAuthenticator(context, log=logging.getLogger("pipeline.relay.auth"))
                self._auth.start()
                self._auth.configure_curve(domain="*", location=str(downstream_curve.authorized_clients_dir))
                if not count_client_keys(downstream_curve.authorized_clients_dir):
                    log.warning("relay: %s holds no *.key file: no subscriber can connect",
                                downstream_curve.authorized_clients_dir)
                self._backend.curve_publickey, self._backend.curve_secretkey = public, secret
                self._backend.curve_server = True
            try:
                self._backend.bind(bind)
            except zmq.ZMQError as exc:
                raise RelayError(f"relay --bind {bind}: {_reason(exc)}") from None
            self.endpoint: str = self._backend.getsockopt_string(zmq.LAST_ENDPOINT)
            self._control = self._socket(zmq.PAIR, 0)
            self._control_peer = self._socket(zmq.PAIR, 0)
            control_address = f"inproc://relay-control-{id(self)}"
            self._control.bind(control_address)
            self._control_peer.connect(control_address)
        except BaseException:
            self._close_sockets()
            raise
        self._closing = threading.Event()
        self._proxy_thread = threading.Thread(target=self._run_proxy, name="relay-proxy", daemon=True)
        self._monitor_thread = threading.Thread(target=self._watch_upstreams, name="relay-monitor", daemon=True)

    def _socket(self, kind: int, high_water_mark: int) -> zmq.Socket:
        s = self._context.socket(kind)
        s.setsockopt(zmq.LINGER, 0)  # a relay holds nothing worth flushing at exit
        if high_water_mark:
            s.setsockopt(zmq.SNDHWM, high_water_mark)
            s.setsockopt(zmq.RCVHWM, high_water_mark)
        self._sockets.append(s)
        return s

    def start(self) -> None:
        self._monitor_thread.start()
        self._proxy_thread.start()

    def _run_proxy(self) -> None:
        try:
            zmq.proxy_steerable(self._frontend, self._backend, None, self._control)
        except zmq.ZMQError as exc:  # the context was terminated under it
            if exc.errno != zmq.ETERM:
                log.error("relay: proxy stopped: %s", _reason(exc))

    def _watch_upstreams(self) -> None:
        while not self._closing.is_set():
            try:
                if not self._monitor.poll(MONITOR_POLL_MS):
                    continue  # disable_monitor() does not wake a waiting reader: look at _closing now and then
                event = recv_monitor_message(self._monitor)
            except zmq.ZMQError:
                return  # monitor closed
            address = event.get("endpoint", b"")
            address = address.decode() if isinstance(address, bytes) else str(address)
            kind = event["event"]
            if kind == zmq.EVENT_MONITOR_STOPPED:
                return
            if address not in self.upstream_connected:
                continue
            if kind in HANDSHAKE_FAILED:
                log.error("relay --from %s: handshake failed (%s)", address,
                          "CURVE keys not accepted" if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH else "protocol")
                continue
            up = kind == zmq.EVENT_HANDSHAKE_SUCCEEDED
            if self.upstream_connected[address] != up:
                self.upstream_connected[address] = up
                log.info("relay --from %s: %s", address, "connected" if up else "disconnected")
                if self._on_upstream_change is not None:
                    self._on_upstream_change(address, up)

    def close(self) -> None:
        """Stop the proxy (TERMINATE on its control socket), then close every socket."""
        if self._proxy_thread.is_alive():
            self._control_peer.send(b"TERMINATE")
            self._proxy_thread.join(timeout=5)
        self._closing.set()
        if self._monitor_thread.is_alive():
            self._monitor_thread.join(timeout=5)
            self._frontend.disable_monitor()
        self._close_sockets()

    def _close_sockets(self) -> None:
        for s in self._sockets:
            s.close(linger=0)
        self._sockets.clear()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def __enter__(self) -> "Relay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def upstream_curves(addresses: list[str], server_key_files: list[str], client_key_file: str | None
                    ) -> dict[str, CurveClientKeys | None]:
    """--from addresses with their CURVE settings: no key files, one server key for every daemon,
    or one per --from in the same order. ValueError (one line) otherwise."""
    if not server_key_files and not client_key_file:
        return {a: None for a in addresses}
    if not server_key_files or not client_key_file:
        raise ValueError("relay: --curve-server-key and --curve-client-key go together")
    if len(server_key_files) not in (1, len(addresses)):
        raise ValueError(f"relay: {len(server_key_files)} --curve-server-key for {len(addresses)} --from: "
                         f"give one for all or one per --from")
    files = server_key_files * len(addresses) if len(server_key_files) == 1 else server_key_files
    out: dict[str, CurveClientKeys | None] = {}
    for address, key_file in zip(addresses, files):
        out[address] = CurveClientKeys.from_files(Path(key_file), Path(client_key_file))
    return out
