"""The bridge process's wiring: one ZeroMQ SUB socket (main thread) -> one bounded buffer per sink
-> one SinkRunner thread per sink. A slow or absent broker only fills its own sink's buffer: the
SUB socket keeps being read, so the daemon never sees a slow subscriber because of a broker."""
from __future__ import annotations

import logging
import threading
import time

import zmq

from pipeline.bridge.buffer import BridgeMessage, MessageBuffer, parse_topic
from pipeline.bridge.metrics import BridgeMetrics
from pipeline.bridge.sinks import Sink, SinkError, SinkRunner, create_sink
from pipeline.config.bridge import BridgeConfig
from pipeline.publish.subscriber import CurveClientKeys

log = logging.getLogger("pipeline.bridge")

RECV_BURST = 1000  # messages read per poll wake-up before checking for stop


class BridgeSourceError(RuntimeError):
    """The SUB socket cannot connect: one line `bridge source.url: URL: reason`."""


class Bridge:
    def __init__(self, cfg: BridgeConfig, context: zmq.Context, metrics: BridgeMetrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or BridgeMetrics()
        self._context = context
        self.buffers: dict[str, MessageBuffer] = {}
        self.sinks: dict[str, Sink] = {}
        self.runners: dict[str, SinkRunner] = {}
        for sc in cfg.sinks:
            delivered = self.metrics.delivered.labels(sc.name)
            buffer = MessageBuffer(sc.buffer)
            self.buffers[sc.name] = buffer
            self.sinks[sc.name] = create_sink(sc, delivered.inc)
            self.metrics.buffered.labels(sc.name).set_function(buffer.__len__)
            self.metrics.connected.labels(sc.name).set(0)
            for counter in (self.metrics.dropped, self.metrics.delivered, self.metrics.requeued,
                            self.metrics.reconnects):
                counter.labels(sc.name)  # exposed as 0 from the start, not only after the first event
        self.last_received = 0.0  # time.monotonic() of the last message; 0: none yet
        self._socket: zmq.Socket | None = None
        self._reported: dict[str, int] = {}  # drops already logged, per sink

    def connect_sinks(self) -> list[str]:
        """First connection of every sink, before anything runs. Returns the fatal errors (wrong
        credentials, TLS, unknown host: one line each); a broker that is only down is retried later."""
        fatal = []
        for sink in self.sinks.values():
            try:
                sink.connect()
                self.metrics.connected.labels(sink.config.name).set(1)
                log.info("%s: connected", sink.label)
            except SinkError as exc:
                if exc.fatal:
                    fatal.append(str(exc))
                else:
                    log.warning("%s; will retry", exc)
        return fatal

    def start(self) -> None:
        src = self.cfg.source
        socket = self._context.socket(zmq.SUB)
        socket.setsockopt(zmq.RCVHWM, src.high_water_mark)
        socket.setsockopt(zmq.LINGER, 0)
        if src.curve is not None:
            try:
                keys = CurveClientKeys.from_files(src.curve.server_key_file, src.curve.client_secret_key_file)
            except ValueError as exc:
                socket.close()
                raise BridgeSourceError(f"bridge source.curve: {exc}") from None
            socket.curve_serverkey, socket.curve_publickey, socket.curve_secretkey = (
                keys.server_public_key, keys.public_key, keys.secret_key)
        try:
            socket.connect(src.url)
        except zmq.ZMQError as exc:
            socket.close()
            raise BridgeSourceError(f"bridge source.url: {src.url}: {zmq.strerror(exc.errno)}") from None
        for prefix in src.topics:
            socket.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self._socket = socket
        for name, sink in self.sinks.items():
            runner = SinkRunner(sink, self.buffers[name], self.metrics,
                                batch=getattr(sink.config, "batch", 100))
            self.runners[name] = runner
            runner.start()

    def run(self, stop: threading.Event) -> None:
        """Read the daemon's messages into every sink's buffer until `stop` is set."""
        assert self._socket is not None
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        next_drop_report = 0.0
        while not stop.is_set():
            if not poller.poll(200):
                continue
            for _ in range(RECV_BURST):
                try:
                    frames = self._socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.dispatch(frames)
            now = time.monotonic()
            if now >= next_drop_report:  # one line every 10 s at most while buffers overflow
                next_drop_report = now + 10.0
                self._report_drops()

    def dispatch(self, frames: list[bytes]) -> None:
        self.metrics.received.inc()
        self.last_received = time.monotonic()
        parsed = parse_topic(frames[0]) if len(frames) == 2 else None
        if parsed is None:
            self.metrics.skipped.inc()
            return
        msg = BridgeMessage(parsed[0], parsed[1], frames[1])
        for name, buffer in self.buffers.items():
            if not buffer.put(msg):
                self.metrics.dropped.labels(name).inc()

    def _report_drops(self) -> None:
        for name, buffer in self.buffers.items():
            if buffer.dropped > self._reported.get(name, 0):
                log.warning("sink %s: buffer full (%d): %d oldest message(s) dropped so far", name,
                            buffer.capacity, buffer.dropped)
                self._reported[name] = buffer.dropped

    def health(self) -> tuple[bool, str]:
        lines = []
        for name, sink in self.sinks.items():
            buffer, runner = self.buffers[name], self.runners.get(name)
            error = runner.last_error if runner is not None else ""
            state = "connected" if sink.connected else f"not connected ({error or 'connecting'})"
            lines.append(f"{sink.label}: {state}; {len(buffer)} buffered, {buffer.dropped} dropped")
        age = time.monotonic() - self.last_received if self.last_received else None
        lines.append(f"source {self.cfg.source.url}: " + (f"last message {age:.1f} s ago" if age is not None
                                                           else "no message yet"))
        return all(s.connected for s in self.sinks.values()), "\n".join(lines)

    def close(self) -> None:
        """Stop reading, give the sinks drain_s to empty their buffers, then close them."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        deadline = time.monotonic() + self.cfg.drain_s
        for runner in self.runners.values():
            runner.stop(max(0.0, deadline - time.monotonic()))
        for name, sink in self.sinks.items():
            if name not in self.runners:
                sink.close()
