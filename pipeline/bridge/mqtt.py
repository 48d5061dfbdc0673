"""MQTT sink (paho-mqtt, MQTT 3.1.1).

Topics: `<prefix>/<camera>/<kind name>`: detections, status, events (det/, status/, evt/ on the
ZeroMQ side; a kind not in KIND_NAMES keeps its own name), payload the daemon's JSON unchanged.
`<prefix>/available`: `online` (retained) while the bridge is connected, `offline` when it leaves,
and the broker's last will says `offline` when the bridge vanishes.

The sink's thread drives paho itself (client.loop), no paho thread. Each connection is a fresh
client: messages not acknowledged when a connection broke go back to our buffer (sent again on
the next connection, so QoS 1 is at least once end to end), instead of a second copy in paho's.
QoS 0 messages count as delivered once written to the socket: on a broken connection they can be
lost, as QoS 0 says.
"""
from __future__ import annotations

import socket
import ssl
import time
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from pipeline.bridge.buffer import BridgeMessage
from pipeline.bridge.sinks import Sink, SinkDisconnected, SinkError, register_sink
from pipeline.config.bridge import MqttSinkConfig

KIND_NAMES = {"det": "detections", "status": "status", "evt": "events"}
CONNACK_TIMEOUT_S = 10.0
# CONNACK refusals that a retry cannot fix (MQTT 3.1.1 return codes 1, 2, 4, 5)
FATAL_CONNACK = ("unsupported protocol", "identifier rejected", "bad user name or password", "not authorized")


def mqtt_topic(prefix: str, msg: BridgeMessage) -> str:
    return f"{prefix}/{msg.camera}/{KIND_NAMES.get(msg.kind, msg.kind)}"


@register_sink
class MqttSink(Sink):
    type_key = "mqtt"

    def __init__(self, config: MqttSinkConfig, on_delivered: Callable[[int], None]) -> None:
        super().__init__(config, on_delivered)
        self.cfg = config
        url = urlsplit(config.url)
        self._host = url.hostname or ""
        self._tls = config.tls is not None or url.scheme == "mqtts"
        self._port = url.port or (8883 if self._tls else 1883)
        self._username = config.username if config.username is not None else (
            unquote(url.username) if url.username else None)
        self._password = config.password if config.password is not None else (
            unquote(url.password) if url.password else None)
        self.availability_topic = f"{config.prefix}/available"
        self._client: mqtt.Client | None = None
        self._connected = False
        self._connack: Any = None
        self._pending: dict[int, BridgeMessage] = {}  # mid -> handed to paho, not yet confirmed
        self._early: set[int] = set()  # confirmed before publish() returned its mid
        self._in_publish = False

    @property
    def connected(self) -> bool:
        return self._connected

    def _new_client(self) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id or f"pipeline-bridge-{self.cfg.name}",
                        protocol=mqtt.MQTTv311, clean_session=True)
        c.max_inflight_messages_set(self.cfg.max_inflight)
        if self._username is not None:
            c.username_pw_set(self._username, self._password)
        if self._tls:
            tls = self.cfg.tls
            insecure = bool(tls and tls.insecure)
            try:
                c.tls_set(ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                          certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                          keyfile=str(tls.key_file) if tls and tls.key_file else None,
                          cert_reqs=ssl.CERT_NONE if insecure else ssl.CERT_REQUIRED)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise SinkError(f"{self.label}: TLS setup: {_one_line(exc)}", fatal=True) from None
            if insecure:
                c.tls_insecure_set(True)
        c.will_set(self.availability_topic, "offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        return c

    # paho callbacks: they run inside client.loop()/publish(), i.e. on the sink's own thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connack = reason

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected = False

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        if self._pending.pop(mid, None) is not None:
            self.on_delivered(1)
        elif self._in_publish:  # QoS 0 written at once: the mid is not in _pending yet
            self._early.add(mid)

    def connect(self) -> None:
        self._drop_client()
        client = self._new_client()
        self._connack = None
        try:
            client.connect(self._host, self._port, keepalive=self.cfg.keepalive_s)
        except ssl.SSLError as exc:
            raise SinkError(f"{self.label}: TLS: {_one_line(exc)}", fatal=True) from None
        except socket.gaierror as exc:
            raise SinkError(f"{self.label}: cannot resolve host {self._host!r}: {exc.strerror}", fatal=True) from None
        except OSError as exc:
            hint = " (is that port TLS? mqtts:// talks TLS only)" if self._tls else ""
            raise SinkError(f"{self.label}: cannot connect: {exc.strerror or _one_line(exc)}{hint}") from None
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        closed = False
        while self._connack is None and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS and self._connack is None:
                closed = True
                break
        reason = self._connack
        if reason is None:
            client.socket() and client.disconnect()
            what = ("the broker closed the connection before answering CONNECT" if closed
                    else f"no answer to CONNECT within {CONNACK_TIMEOUT_S:.0f} s")
            raise SinkError(f"{self.label}: {what} (not an MQTT broker? TLS on one side only?)")
        if reason.is_failure:
            client.disconnect()
            text = str(reason)
            raise SinkError(f"{self.label}: broker refused the connection: {text}",
                            fatal=text.lower() in FATAL_CONNACK) from None
        self._client = client
        self._connected = True
        client.publish(self.availability_topic, "online", qos=1, retain=True)

    def send(self, msgs: list[BridgeMessage]) -> int:
        client = self._client
        cfg = self.cfg
        for i, msg in enumerate(msgs):
            while self._connected and len(self._pending) >= cfg.max_inflight:
                client.loop(timeout=0.05)  # wait for acknowledgements: our buffer, not paho's, holds the rest
            if not self._connected:
                self._lost(msgs[i:])
            self._in_publish = True
            try:
                info = client.publish(mqtt_topic(cfg.prefix, msg), msg.payload, qos=cfg.qos,
                                      retain=KIND_NAMES.get(msg.kind, msg.kind) in cfg.retain)
            finally:
                self._in_publish = False
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._connected = False
            if info.mid in self._early:
                self.on_delivered(1)
            else:
                self._pending[info.mid] = msg
            self._early.clear()  # only this publish's own mid can be in it: nothing stale survives
        client.loop(timeout=0)
        if not self._connected:
            self._lost([])
        return 0

    def idle(self) -> None:
        if self._client is not None:
            self._client.loop(timeout=0.05)
            if not self._connected:
                self._lost([])

    def flush(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._pending and self._connected and time.monotonic() < deadline:
            self._client.loop(timeout=0.05)

    def _lost(self, not_sent: list[BridgeMessage]) -> None:
        unconfirmed = list(self._pending.values()) + not_sent
        self._pending.clear()
        self._early.clear()
        self._drop_client()
        raise SinkDisconnected(f"{self.label}: connection lost", unconfirmed)

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.socket() and self._client.disconnect()
                self._client.loop(timeout=0)
            except (OSError, ValueError):
                pass
            self._client = None
        self._connected = False

    def close(self) -> None:
        if self._client is not None and self._connected:
            info = self._client.publish(self.availability_topic, "offline", qos=1, retain=True)
            deadline = time.monotonic() + 1.0
            while not info.is_published() and self._connected and time.monotonic() < deadline:
                self._client.loop(timeout=0.05)
        self._drop_client()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
