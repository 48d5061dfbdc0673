"""ZeroMQ SUB side for consumers, tests and `pipeline subscribe`."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import zmq
import zmq.auth

from pipeline.publish.messages import decode_message, topic_prefixes


class SubscriberConnectError(RuntimeError):
    """The SUB socket could not connect; one line: `subscribe: URL: reason`."""


@dataclass(frozen=True)
class CurveClientKeys:
    """What a subscriber needs to reach a CURVE publisher: the server's public key and its own pair."""

    server_public_key: bytes
    public_key: bytes
    secret_key: bytes

    @classmethod
    def from_files(cls, server_key_file: str | Path, client_secret_key_file: str | Path) -> "CurveClientKeys":
        """zmq.auth certificate files: the server's public `.key`, our own `.key_secret`.
        ValueError (one line naming the file) when one is unusable."""
        server_public = _load_key(server_key_file, secret=False)
        client_public = _load_key(client_secret_key_file, secret=False)
        client_secret = _load_key(client_secret_key_file, secret=True)
        return cls(server_public, client_public, client_secret)


def _load_key(path: str | Path, secret: bool) -> bytes:
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"subscribe: {path}: not a zmq certificate ({exc})") from None
    key = secret_key if secret else public
    if not key:
        raise ValueError(f"subscribe: {path}: has no {'secret' if secret else 'public'} key")
    return key


class Subscriber:
    """Receives (topic, message) pairs from a Publisher.

    camera=None receives every camera; kinds picks "det", "status" and/or "evt" (analytics events).
    Without a context the subscriber makes its own and terminates it on close().
    """

    def __init__(self, url: str, camera: str | None = None, kinds: tuple[str, ...] = ("det", "status", "evt"),
                 context: zmq.Context | None = None, rcvhwm: int = 10000,
                 curve: CurveClientKeys | None = None) -> None:
        self.url = url
        prefixes = topic_prefixes(kinds, camera)  # validates kinds and camera before any socket exists
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        socket = self._context.socket(zmq.SUB)
        socket.setsockopt(zmq.RCVHWM, rcvhwm)
        socket.setsockopt(zmq.LINGER, 0)  # a subscriber has nothing worth flushing
        if curve is not None:  # before connect: the handshake uses them
            socket.curve_serverkey = curve.server_public_key
            socket.curve_publickey = curve.public_key
            socket.curve_secretkey = curve.secret_key
        try:
            socket.connect(url)
        except zmq.ZMQError as exc:
            socket.close(linger=0)
            if self._own_context:
                self._context.term()
            reason = zmq.strerror(exc.errno) if exc.errno else str(exc)  # without pyzmq's "(addr=...)" tail
            raise SubscriberConnectError(f"subscribe: {url}: {reason}") from None
        for prefix in prefixes:
            socket.setsockopt(zmq.SUBSCRIBE, prefix.encode("ascii"))
        self._socket: zmq.Socket | None = socket
        self._poller = zmq.Poller()
        self._poller.register(socket, zmq.POLLIN)

    def recv(self, timeout: float | None) -> tuple[str, dict[str, Any]] | None:
        """The next (topic, message), or None after `timeout` seconds (None waits forever).
        A malformed message raises MessageError (one line)."""
        if self._socket is None:
            raise RuntimeError(f"subscribe: {self.url}: the subscriber is closed")
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            remaining_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if self._poller.poll(remaining_ms):
                return decode_message(self._socket.recv_multipart(), self.url)
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while self._socket is not None:
            item = self.recv(None)
            if item is not None:
                yield item

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
            if self._own_context:
                self._context.term()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_message_line(topic: str, msg: dict[str, Any]) -> str:
    """One JSON object per line for `pipeline subscribe`: {"topic": ..., "message": {...}}."""
    return json.dumps({"topic": topic, "message": msg}, separators=(",", ":"), ensure_ascii=False)


def connect_url(bind: str) -> str:
    """The address a local subscriber connects to for a publisher bound at `bind`
    (a wildcard host becomes loopback)."""
    for wildcard in ("://*:", "://0.0.0.0:"):
        if wildcard in bind:
            return bind.replace(wildcard, "://127.0.0.1:", 1)
    return bind
