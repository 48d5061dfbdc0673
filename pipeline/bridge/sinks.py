"""The Sink interface, its registry, and SinkRunner: the thread that feeds one sink from its buffer
and reconnects with backoff. A sink delivers at least once: messages handed to a broker and not
confirmed when the connection broke go back to the front of the buffer and are sent again."""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import Callable, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pipeline.bridge.buffer import BridgeMessage, MessageBuffer
from pipeline.bridge.metrics import BridgeMetrics
from pipeline.config.bridge import SinkBase

log = logging.getLogger("pipeline.bridge")

BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 10.0  # as the network cameras: doubling from 0.5 s to 10 s
TAKE_TIMEOUT_S = 0.1  # an idle sink still looks after its connection (keepalive, acknowledgements) this often


class SinkError(Exception):
    """One line naming the sink. fatal: retrying cannot help (credentials, TLS, an unknown host)."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class SinkDisconnected(Exception):
    """The connection broke; `unconfirmed` are the messages the broker has not confirmed, oldest first."""

    def __init__(self, message: str, unconfirmed: list[BridgeMessage]) -> None:
        super().__init__(message)
        self.unconfirmed = unconfirmed


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Sink(ABC):
    """One broker connection. Used by its SinkRunner thread only. `on_delivered(n)` is called as
    the broker confirms messages."""

    type_key: ClassVar[str]

    def __init__(self, config: SinkBase, on_delivered: Callable[[int], None]) -> None:
        self.config = config
        self.on_delivered = on_delivered
        self.label = f"sink {config.name} ({self.type_key} {redact(config.url)})"  # type: ignore[attr-defined]

    @abstractmethod
    def connect(self) -> None:
        """(Re)connect; SinkError (one line starting with self.label) when it cannot."""

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    def send(self, msgs: list[BridgeMessage]) -> int:
        """Hand messages to the broker (may wait for room among the unconfirmed ones); returns how
        many the broker rejected (sending them again would not help). SinkDisconnected when the
        connection breaks."""

    def idle(self) -> None:
        """Called when there is nothing to send: look after the connection."""

    def flush(self, timeout: float) -> None:
        """Wait up to `timeout` s for the broker to confirm what was handed to it."""

    @abstractmethod
    def close(self) -> None:
        """Leave cleanly (a last goodbye where the protocol has one) and release the connection."""


SINK_TYPES: dict[str, type[Sink]] = {}


def register_sink(cls: type[Sink]) -> type[Sink]:
    SINK_TYPES[cls.type_key] = cls
    return cls


def create_sink(config: SinkBase, on_delivered: Callable[[int], None]) -> Sink:
    # the sink modules import their client library; only the types in use are loaded
    kind = config.type  # type: ignore[attr-defined]
    if kind == "mqtt":
        import pipeline.bridge.mqtt  # noqa: F401
    elif kind == "redis":
        import pipeline.bridge.redis_streams  # noqa: F401
    return SINK_TYPES[kind](config, on_delivered)


class SinkRunner:
    """A thread moving messages from `buffer` to `sink`; reconnects with backoff while the broker is
    away (the buffer keeps filling, dropping its oldest beyond its bound). stop(drain_s) lets it
    empty the buffer for up to drain_s seconds first."""

    def __init__(self, sink: Sink, buffer: MessageBuffer, metrics: BridgeMetrics, batch: int) -> None:
        self.sink, self.buffer, self.metrics = sink, buffer, metrics
        self.name = sink.config.name
        self.batch = batch
        self.last_error = ""
        self._draining = threading.Event()
        self._stop_now = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        down_since: float | None = None if self.sink.connected else time.monotonic()
        while not self._stop_now.is_set():
            if self._draining.is_set() and not len(self.buffer):
                break
            if not self.sink.connected:
                try:
                    self.sink.connect()
                except SinkError as exc:
                    if str(exc) != self.last_error:  # one line per new reason, not one per retry
                        log.warning("%s; retrying every %.1f-%.0f s", exc, BACKOFF_FIRST_S, BACKOFF_MAX_S)
                    self.last_error = str(exc)
                    self._stop_now.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                backoff = BACKOFF_FIRST_S
                self.last_error = ""
                self.metrics.connected.labels(self.name).set(1)
                if down_since is not None:
                    self.metrics.reconnects.labels(self.name).inc()
                    log.info("%s: connected after %.1f s away; %d message(s) buffered, %d dropped so far",
                             self.sink.label, time.monotonic() - down_since, len(self.buffer), self.buffer.dropped)
                down_since = None
            msgs = self.buffer.take(self.batch, TAKE_TIMEOUT_S)
            try:
                if msgs:
                    rejected = self.sink.send(msgs)
                    if rejected:
                        self.metrics.dropped.labels(self.name).inc(rejected)
                else:
                    self.sink.idle()
            except SinkDisconnected as exc:
                lost = self.buffer.put_back(exc.unconfirmed)
                self.metrics.dropped.labels(self.name).inc(lost)
                self.metrics.requeued.labels(self.name).inc(len(exc.unconfirmed) - lost)
                self.metrics.connected.labels(self.name).set(0)
                self.last_error = str(exc)
                down_since = time.monotonic()
                log.warning("%s; %d unconfirmed message(s) back in the buffer (%d dropped: buffer full)",
                            exc, len(exc.unconfirmed) - lost, lost)
        if self.sink.connected:
            self.sink.flush(1.0)
        left = len(self.buffer)
        if left:
            log.warning("%s: %d message(s) not delivered at exit", self.sink.label, left)
            self.metrics.dropped.labels(self.name).inc(left)
        self.sink.close()
        self.metrics.connected.labels(self.name).set(0)

    def stop(self, drain_s: float) -> None:
        self._draining.set()
        self._thread.join(timeout=drain_s)
        self._stop_now.set()
        self._thread.join(timeout=10)
