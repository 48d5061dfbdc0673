"""ZeroMQ PUB side: one socket, owned and used by the daemon's publish thread only.

Slow subscribers: publishing never blocks. When a subscriber's queue (our SNDHWM plus its
RCVHWM plus the TCP buffers) is full, that subscriber loses the message and the others still get
it; the subscriber sees a gap in `seq`. A plain PUB socket drops silently, so the socket is an
XPUB (same wire protocol for SUB peers) with XPUB_NODROP: a send that would be lost for some
subscriber fails with EAGAIN instead. Such a message is counted in `messages_dropped` and sent
again with NODROP off, which delivers it to every subscriber with room. The count is "messages
at least one subscriber missed", not per subscriber (ZeroMQ does not say which pipe was full).

Slow joiners: a subscriber only gets messages published after its subscription reached us.
`wait_for_subscribers` lets the daemon hold its cameras until N subscribers are connected.

CURVE (optional): the socket is a CURVE server with the configured secret key; a
ThreadAuthenticator (one per process: it owns the context's ZAP endpoint) admits only clients
whose public certificate is in `authorized_clients_dir`. Others never complete the handshake.

Hostile peers (docs/RELIABILITY.md, "Hostile network"): the only thing a peer sends us is
subscriptions, so MAXMSGSIZE caps an incoming message at 1 KB (a subscription is at most ~75
bytes; CURVE's handshake frames must fit too): a 4 GB frame header is refused before anything
is allocated, before the CURVE handshake too. And the socket is XPUB_MANUAL: libzmq hands every
(un)subscription to us and subscribes the peer only when we say so. We say so for prefixes of
the topics of cameras we publish (always) and for at most MAX_OTHER_TOPICS other topics in the
publisher's lifetime (a subscriber that is early for a camera); the rest are refused and
counted, so what a peer can make us hold is bounded by connections x known topics, not by what
it sends. A peer that never completes its handshake is dropped after HANDSHAKE_TIMEOUT_MS.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from pipeline.config import CurveConfig
from pipeline.frame import FrameDetections, StatusEvent
from pipeline.observe.metrics import Metrics
from pipeline.frame import FrameEvents
from pipeline.publish.messages import (detection_topic, detections_payload, encode_payload, event_topic,
                                       events_payload, status_payload, status_topic)


log = logging.getLogger(__name__)


class PublishBindError(RuntimeError):
    """The PUB socket could not bind; the message is one line: `publish.bind: ADDRESS: reason`."""


class PublishCurveError(ValueError):
    """CURVE keys unusable; one line naming the file: `publish.curve.FIELD: PATH: reason`."""


def load_server_secret_key(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a zmq.auth secret certificate file."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise PublishCurveError(f"publish.curve.server_secret_key_file: {path}: "
                                f"not a zmq certificate ({exc})") from None
    if not secret:
        raise PublishCurveError(f"publish.curve.server_secret_key_file: {path}: has no secret key "
                                f"(that is the public half; use the .key_secret file)")
    return public, secret


def count_client_keys(directory: Path) -> int:
    return sum(1 for _ in directory.glob("*.key"))


# Connections, not subscriptions, are what a PUB socket can observe (through its monitor).
MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
SUBSCRIPTION_SETTLE_S = 0.2  # after a connect, the SUB's subscriptions follow within milliseconds
MAX_TOPIC_BYTES = len("status/") + 64 + 1  # camera ids are at most 64 characters (config/camera.py)
# MAXMSGSIZE also bounds the handshake's frames (CURVE's INITIATE is ~300 bytes with metadata),
# so it is a round kilobyte, not one topic; _admit refuses longer topics anyway.
MAX_INCOMING_MESSAGE_BYTES = 1024
HANDSHAKE_TIMEOUT_MS = 5000
MAX_OTHER_TOPICS = 1024  # distinct topics subscribed that no camera of ours has (yet)
MAX_SUBSCRIPTIONS_PER_SERVE = 10000  # per call: one flood must not starve the sends
DEFAULT_MAX_CONNECTIONS = 256
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks (RFC 27)


class ConnectionGate:
    """Counts the publish socket's peer connections (its monitor) and, without CURVE, answers the
    ZAP requests libzmq makes at each handshake: a connection past `limit` gets ZAP status 300
    (temporary), so it never receives; it is dropped at the handshake timeout and the peer retries,
    getting in once a slot is free. Subscribers cannot pile up (each holds an fd and up to
    high_water_mark queued messages). The limit counts the connections admitted, not the refused ones
    still waiting for their timeout: counting those, refused peers that retried together each saw the
    others and were all refused again, every handshake timeout, while a slot stood free (a CI run
    waited over 40 s). ZAP requests do not name their connection, so each answer goes to the oldest
    accepted connection not yet answered (libzmq asks in that order).
    With CURVE the ThreadAuthenticator answers ZAP (only listed clients get in) and this only counts.
    Runs its own thread: the monitor and the ZAP socket are used by it alone."""

    def __init__(self, context: zmq.Context, monitor: zmq.Socket, limit: int, serve_zap: bool) -> None:
        self.limit = limit
        self.refused = 0
        self._monitor = monitor
        self._connections: set[int] = set()  # fds of accepted peer connections
        self._unanswered: list[int] = []  # accepted, in order, not yet given a ZAP answer
        self._admitted: set[int] = set()  # given ZAP "200" and still connected
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._zap: zmq.Socket | None = None
        if serve_zap:
            zap = context.socket(zmq.REP)
            zap.setsockopt(zmq.LINGER, 0)
            try:
                zap.bind(ZAP_ENDPOINT)
                self._zap = zap
            except zmq.ZMQError:  # another handler on this context: it decides, we only count
                zap.close()
                log.warning("publish: another ZAP handler owns this ZeroMQ context; subscriber count not capped")
        self._thread = threading.Thread(target=self._run, name="publish-gate", daemon=True)
        self._thread.start()

    @property
    def serves_zap(self) -> bool:
        return self._zap is not None

    @property
    def connected(self) -> int:
        with self._changed:
            return len(self._connections)

    def wait_for(self, count: int, timeout_s: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: len(self._connections) >= count, timeout_s)
            return len(self._connections)

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._monitor, zmq.POLLIN)
        if self._zap is not None:
            poller.register(self._zap, zmq.POLLIN)
        while not self._stop.is_set():
            ready = dict(poller.poll(100))
            while self._monitor.poll(0):  # every connection event before any ZAP answer
                self._on_event(recv_monitor_message(self._monitor))
            if self._zap is not None and self._zap in ready:
                self._answer(self._zap.recv_multipart())

    def _on_event(self, event: dict) -> None:
        with self._changed:
            fd = event["value"]
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._connections.add(fd)
                self._unanswered.append(fd)
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self._connections.discard(fd)
                self._admitted.discard(fd)
                if fd in self._unanswered:
                    self._unanswered.remove(fd)
            self._changed.notify_all()

    def admit_next(self) -> bool:
        """The answer for the next ZAP request: in while fewer than `limit` connections are admitted."""
        with self._changed:
            fd = self._unanswered.pop(0) if self._unanswered else None
            admitted = len(self._admitted) < self.limit
            if admitted and fd is not None:
                self._admitted.add(fd)
            return admitted

    def _answer(self, request: list[bytes]) -> None:
        """ZAP 1.0 (RFC 27): [version, request id, domain, address, identity, mechanism, ...]."""
        if len(request) < 6 or request[0] != b"1.0":
            return  # not ZAP: nothing sane to answer (REP still needs one)
        admitted = self.admit_next()
        if not admitted:
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                log.warning("publish: refused %d subscriber connection(s) past publish.max_subscribers=%d "
                            "(the latest from %s)", self.refused, self.limit, request[3].decode(errors="replace"))
        self._zap.send_multipart([b"1.0", request[1], b"200" if admitted else b"300",  # type: ignore[union-attr]
                                  b"OK" if admitted else b"too many subscribers", b"", b""])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._monitor.close(linger=0)
        if self._zap is not None:
            self._zap.close(linger=0)
            self._zap = None


class Publisher:
    def __init__(self, context: zmq.Context, bind: str, high_water_mark: int, linger_ms: int,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.time,
                 curve: CurveConfig | None = None, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self._metrics = metrics
        self._clock = clock  # Unix seconds for published_at
        self._next_seq: dict[str, int] = {}  # per camera, for the publisher's lifetime
        self._next_event_seq: dict[str, int] = {}  # per camera: events messages have their own seq
        self._curve = curve
        # every prefix of our cameras' topics, and of the kinds (a subscriber of all cameras)
        self._known_topics: set[bytes] = {kind[:n] for kind in (b"det/", b"status/") for n in range(len(kind) + 1)}
        self._known_cameras: set[str] = set()
        self._other_topics: set[bytes] = set()
        self._refused_subscriptions = 0
        self._auth: ThreadAuthenticator | None = None
        keys = load_server_secret_key(curve.server_secret_key_file) if curve else None
        socket = context.socket(zmq.XPUB)
        socket.setsockopt(zmq.XPUB_NODROP, 1)  # see the module docstring: how drops are counted
        socket.setsockopt(zmq.XPUB_MANUAL, 1)  # we decide which subscriptions a peer gets
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_INCOMING_MESSAGE_BYTES)
        # a peer that connects and never completes the ZMTP greeting holds an fd: 5 s, not libzmq's 30
        socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_TIMEOUT_MS)
        socket.setsockopt(zmq.TCP_KEEPALIVE, 1)  # peers that vanished (power, NAT) are noticed and freed
        socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 60)
        socket.setsockopt(zmq.SNDHWM, high_water_mark)
        socket.setsockopt(zmq.LINGER, linger_ms)
        if curve is not None and keys is not None:
            self._auth = ThreadAuthenticator(context, log=logging.getLogger("pipeline.publish.auth"))
            self._auth.start()
            self.reload_curve_clients()
            socket.curve_publickey, socket.curve_secretkey = keys
            socket.curve_server = True
        # Watched from before bind so a subscriber that was already retrying is counted too.
        self._gate = ConnectionGate(context, socket.get_monitor_socket(MONITOR_EVENTS), max_connections,
                                    serve_zap=curve is None)
        if self._gate.serves_zap:
            socket.zap_domain = b"pipeline"  # NULL mechanism: libzmq asks ZAP (the gate) at each handshake
        try:
            socket.bind(bind)
        except zmq.ZMQError as exc:
            socket.disable_monitor()
            self._gate.close()
            socket.close(linger=0)  # a leaked socket would make context.term() hang
            self._stop_auth()
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
        connected = self._gate.wait_for(count, timeout_s)
        if count and connected >= count:
            time.sleep(settle_s)
        return connected

    def publish_detections(self, fd: FrameDetections) -> int:
        """Send one detections message; returns the seq it carried.

        seq advances even when the send is refused, so a gap at the subscriber always means
        a lost message. Raises MessageError (one line) for values the schema cannot carry.
        """
        seq = self.publish_detections_batch((fd,))[0]
        assert seq is not None  # no on_error: a refused frame raised
        return seq

    def publish_detections_batch(self, items: Sequence[FrameDetections],
                                 on_error: Callable[[FrameDetections, Exception], None] | None = None
                                 ) -> list[int | None]:
        """publish_detections for each item in order (one batch's frames), applying subscriptions
        once for the batch instead of before every message; returns the seqs. A frame the schema
        cannot carry (MessageError, ValueError) goes to `on_error` and gets None, and the others still go out;
        without `on_error` the error is raised."""
        if self._socket is None:
            raise RuntimeError("publish: the publisher is closed")
        self.serve_subscriptions()
        seqs: list[int | None] = []
        for fd in items:
            self._know_camera(fd.camera_id)
            seq = self._next_seq.get(fd.camera_id, 0)
            try:
                body = encode_payload(detections_payload(fd, seq, self._clock()))
            except ValueError as exc:  # MessageError, or a NaN json refuses
                if on_error is None:
                    raise
                on_error(fd, exc)
                seqs.append(None)
                continue
            self._next_seq[fd.camera_id] = seq + 1
            if self._send(detection_topic(fd.camera_id), body, "det", serve=False) and self._metrics:
                self._metrics.mark_published(fd.camera_id, fd.captured_at)
            seqs.append(seq)
        return seqs

    def publish_events(self, fe: FrameEvents) -> int:
        """Send one events message (evt/<camera>/, pipeline.events/1); returns its seq."""
        self._know_camera(fe.camera_id)
        seq = self._next_event_seq.get(fe.camera_id, 0)
        payload = events_payload(fe, seq, self._clock())
        self._next_event_seq[fe.camera_id] = seq + 1
        self._send(event_topic(fe.camera_id), encode_payload(payload), "evt")
        return seq

    def publish_status(self, ev: StatusEvent) -> None:
        self._know_camera(ev.camera_id)
        self._send(status_topic(ev.camera_id), encode_payload(status_payload(ev)), "status")

    def _send(self, topic: str, body: bytes, kind: str, serve: bool = True) -> bool:
        """Hand one message to ZeroMQ; every subscriber with room in its queue gets it. True
        (kept for callers): a PUB-like socket never refuses a send outright. serve=False: the
        caller applied pending subscriptions just before (one batch's messages)."""
        if self._socket is None:
            raise RuntimeError("publish: the publisher is closed")
        if serve:
            self.serve_subscriptions()
        parts = [topic.encode("ascii"), body]
        try:
            self._socket.send_multipart(parts, flags=zmq.NOBLOCK)
        except zmq.Again:  # some subscriber's queue is full: it misses this one, the others do not
            if self._metrics:
                self._metrics.messages_dropped.labels(kind).inc()
            self._socket.setsockopt(zmq.XPUB_NODROP, 0)
            try:
                self._socket.send_multipart(parts, flags=zmq.NOBLOCK)
            finally:
                self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        return True

    def serve_subscriptions(self) -> int:
        """Apply the (un)subscriptions peers sent since the last call (XPUB_MANUAL: until we do,
        a peer gets nothing). Called before every send and by the publish thread when idle, so
        they never pile up. Returns how many were read."""
        assert self._socket is not None
        socket = self._socket
        read = 0
        while read < MAX_SUBSCRIPTIONS_PER_SERVE and socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            message = socket.recv(zmq.NOBLOCK)
            read += 1
            if not message or message[0] not in (0, 1):
                continue  # not a subscription: XPUB only forwards these, so ignore anything else
            topic = message[1:]
            if message[0] == 0:  # applies to the peer that sent it (the "last pipe")
                socket.setsockopt(zmq.UNSUBSCRIBE, topic)
            elif self._admit(topic):
                socket.setsockopt(zmq.SUBSCRIBE, topic)
        return read

    def _admit(self, topic: bytes) -> bool:
        if topic in self._known_topics or topic in self._other_topics:
            return True
        if len(topic) <= MAX_TOPIC_BYTES and len(self._other_topics) < MAX_OTHER_TOPICS:
            self._other_topics.add(topic)
            return True
        self._refused_subscriptions += 1
        if self._refused_subscriptions in (1, 10, 100) or self._refused_subscriptions % 10000 == 0:
            log.warning("publish: refused %d subscription(s) to topics no camera has (limit %d other "
                        "topics; the latest is %d bytes)", self._refused_subscriptions, MAX_OTHER_TOPICS,
                        len(topic))
        if self._metrics:
            self._metrics.subscriptions_refused.inc()
        return False

    def _know_camera(self, camera_id: str) -> None:
        if camera_id in self._known_cameras:
            return
        self._known_cameras.add(camera_id)
        for topic in (detection_topic(camera_id), status_topic(camera_id), event_topic(camera_id)):
            raw = topic.encode("ascii")
            self._known_topics.update(raw[:n] for n in range(len(raw) + 1))

    @property
    def connections(self) -> int:
        """Peer connections open now (tcp/ipc; inproc reports none)."""
        return self._gate.connected

    def reload_curve_clients(self) -> int:
        """Re-read authorized_clients_dir (new clients get in, removed ones cannot reconnect);
        returns how many client keys it holds. No CURVE: 0."""
        if self._auth is None or self._curve is None:
            return 0
        directory = self._curve.authorized_clients_dir
        self._auth.configure_curve(domain="*", location=str(directory))
        count = count_client_keys(directory)
        if not count:
            log.warning("publish.curve.authorized_clients_dir %s holds no *.key file: no subscriber can "
                        "connect", directory)
        return count

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def close(self) -> None:
        """Close the socket (waits up to linger_ms for queued messages at context term).
        The zmq.Context belongs to the daemon and stays open."""
        if self._socket is not None:
            self._socket.disable_monitor()
            self._gate.close()
            self._socket.close()
            self._socket = None
        self._stop_auth()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
