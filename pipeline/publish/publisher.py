"""ZeroMQ PUB side: one socket, owned and used by the daemon's publish thread only.

Slow subscribers: a PUB socket never blocks. When a subscriber's queue (our SNDHWM plus its
RCVHWM plus the TCP buffers) is full, ZeroMQ silently drops that subscriber's messages and keeps
serving the others. The publisher cannot see those drops; subscribers see them as gaps in `seq`.
`messages_dropped` only counts the rare sends ZeroMQ refuses outright (zmq.Again).

Slow joiners: a subscriber only gets messages published after its subscription reached us.
`wait_for_subscribers` lets the daemon hold its cameras until N subscribers are connected.
"""
from __future__ import annotations

import time
from typing import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from pipeline.frame import FrameDetections, StatusEvent
from pipeline.metrics import Metrics
from pipeline.publish.messages import (detection_topic, detections_payload, encode_payload, status_payload,
                                       status_topic)


class PublishBindError(RuntimeError):
    """The PUB socket could not bind; the message is one line: `publish.bind: ADDRESS: reason`."""


# Connections, not subscriptions, are what a PUB socket can observe (through its monitor).
MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
SUBSCRIPTION_SETTLE_S = 0.2  # after a connect, the SUB's subscriptions follow within milliseconds


class Publisher:
    def __init__(self, context: zmq.Context, bind: str, high_water_mark: int, linger_ms: int,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.time) -> None:
        self._metrics = metrics
        self._clock = clock  # Unix seconds for published_at
        self._next_seq: dict[str, int] = {}  # per camera, for the publisher's lifetime
        socket = context.socket(zmq.PUB)
        socket.setsockopt(zmq.SNDHWM, high_water_mark)
        socket.setsockopt(zmq.LINGER, linger_ms)
        # Watched from before bind so a subscriber that was already retrying is counted too;
        # the monitor is stopped at the first publish (an unread monitor must not pile up events).
        self._monitor: zmq.Socket | None = socket.get_monitor_socket(MONITOR_EVENTS)
        self._connections: set[int] = set()  # fds of accepted peer connections
        try:
            socket.bind(bind)
        except zmq.ZMQError as exc:
            socket.disable_monitor()
            self._monitor.close(linger=0)
            socket.close(linger=0)  # a leaked socket would make context.term() hang
            reason = zmq.strerror(exc.errno) if exc.errno else str(exc)  # without pyzmq's "(addr=...)" tail
            raise PublishBindError(f"publish.bind: {bind}: {reason}") from None
        self._socket: zmq.Socket | None = socket
        # the resolved address: differs from `bind` for wildcard ports like tcp://127.0.0.1:*
        self.endpoint: str = socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def wait_for_subscribers(self, count: int, timeout_s: float,
                             settle_s: float = SUBSCRIPTION_SETTLE_S) -> int:
        """Wait until `count` peers are connected (tcp/ipc; inproc reports none), at most
        `timeout_s`; returns how many are. Call before the first publish. Best effort: a PUB
        socket sees connections, so after they are there it waits `settle_s` more for their
        subscriptions to arrive."""
        deadline = time.monotonic() + timeout_s
        while self._monitor is not None and len(self._connections) < count:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            if self._monitor.poll(remaining_ms):
                event = recv_monitor_message(self._monitor)
                if event["event"] == zmq.EVENT_ACCEPTED:
                    self._connections.add(event["value"])
                elif event["event"] == zmq.EVENT_DISCONNECTED:
                    self._connections.discard(event["value"])
        connected = len(self._connections)
        if count and connected >= count:
            time.sleep(settle_s)
        return connected

    def publish_detections(self, fd: FrameDetections) -> int:
        """Send one detections message; returns the seq it carried.

        seq advances even when the send is refused, so a gap at the subscriber always means
        a lost message. Raises MessageError (one line) for values the schema cannot carry.
        """
        seq = self._next_seq.get(fd.camera_id, 0)
        payload = detections_payload(fd, seq, self._clock())
        self._next_seq[fd.camera_id] = seq + 1
        if self._send(detection_topic(fd.camera_id), encode_payload(payload), "det") and self._metrics:
            self._metrics.mark_published(fd.camera_id, fd.captured_at)
        return seq

    def publish_status(self, ev: StatusEvent) -> None:
        self._send(status_topic(ev.camera_id), encode_payload(status_payload(ev)), "status")

    def _send(self, topic: str, body: bytes, kind: str) -> bool:
        if self._socket is None:
            raise RuntimeError("publish: the publisher is closed")
        if self._monitor is not None:
            self._stop_monitor()
        try:
            self._socket.send_multipart([topic.encode("ascii"), body], flags=zmq.NOBLOCK)
        except zmq.Again:
            if self._metrics:
                self._metrics.messages_dropped.labels(kind).inc()
            return False
        return True

    def _stop_monitor(self) -> None:
        if self._monitor is not None and self._socket is not None:
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None

    def close(self) -> None:
        """Close the socket (waits up to linger_ms for queued messages at context term).
        The zmq.Context belongs to the daemon and stays open."""
        if self._socket is not None:
            self._stop_monitor()
            self._socket.close()
            self._socket = None

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
