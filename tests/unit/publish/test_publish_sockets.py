"""Publisher and Subscriber over real ZeroMQ sockets on 127.0.0.1 (random ports)."""
from __future__ import annotations

import socket
import time
from typing import Callable, Iterator

import jsonschema
import pytest
import zmq

from pipeline.frame import CameraState, Detection, FrameDetections, StatusEvent
from pipeline.observe.metrics import Metrics
from pipeline.publish import (MessageError, PublishBindError, Publisher, Subscriber, SubscriberConnectError,
                              load_schema)

pytestmark = pytest.mark.timeout(60)

ANY_PORT = "tcp://127.0.0.1:*"
VALIDATORS = {"pipeline.detections/2": jsonschema.Draft202012Validator(load_schema("detections")),
              "pipeline.status/1": jsonschema.Draft202012Validator(load_schema("status"))}
PROBE = "probe"  # reason of the status messages that only wait out the slow joiner
PROBE_FRAME = 10**9  # frame index of detections probes
END = "end"  # reason of the status message that closes a test's stream


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.term()  # hangs (and the timeout fails the test) if any socket was left open


def frame(camera: str, index: int, n_detections: int = 1) -> FrameDetections:
    dets = tuple(Detection("person", 0, 0.75, (1.0 + i, 2.0, 30.5 + i, 40.0)) for i in range(n_detections))
    return FrameDetections(camera, index, index / 25, time.time(), 640, 480, dets)


def probe_frame(camera: str) -> FrameDetections:
    """A detections probe, recognisable by its frame index (FrameDetections cannot carry a reason)."""
    return FrameDetections(camera, PROBE_FRAME, None, time.time(), 1, 1, ())


def status(camera: str, reason: str, state: CameraState = CameraState.UP) -> StatusEvent:
    return StatusEvent(camera, state, time.time(), reason)


def wait_until_subscribed(subs: list[Subscriber], probe: Callable[[], None], deadline_s: float = 10.0) -> None:
    """Publish probes until every subscriber has received one (ZeroMQ's slow joiner)."""
    pending = list(subs)
    deadline = time.monotonic() + deadline_s
    while pending:
        assert time.monotonic() < deadline, "subscribers never received a probe"
        probe()
        pending = [s for s in pending if s.recv(0.02) is None]


def is_probe(msg: dict) -> bool:
    return msg.get("reason") == PROBE or msg.get("frame") == PROBE_FRAME


def collect(sub: Subscriber, until: Callable[[dict], bool], deadline_s: float = 10.0) -> list[tuple[str, dict]]:
    """Everything but probes, up to and including the first message `until` accepts."""
    got: list[tuple[str, dict]] = []
    deadline = time.monotonic() + deadline_s
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no end marker after {len(got)} messages"
        item = sub.recv(remaining)
        if item is None or is_probe(item[1]):
            continue
        got.append(item)
        if until(item[1]):
            return got


def is_end(camera: str) -> Callable[[dict], bool]:
    return lambda msg: msg.get("reason") == END and msg["camera"] == camera


# ------------------------------------------------------------------ seq and camera isolation

def test_seq_is_contiguous_per_camera_and_cam1_never_sees_cam10(context: zmq.Context) -> None:
    cameras = ("cam1", "cam10", "cam1-b")
    with Publisher(context, ANY_PORT, 1000, 0) as pub, \
            Subscriber(pub.endpoint, camera="cam1", context=context) as sub1, \
            Subscriber(pub.endpoint, camera="cam10", context=context) as sub10, \
            Subscriber(pub.endpoint, context=context) as sub_all:
        wait_until_subscribed([sub1, sub10, sub_all],
                              lambda: [pub.publish_status(status(c, PROBE)) for c in ("cam1", "cam10")])
        returned: dict[str, list[int]] = {c: [] for c in cameras}
        for i in range(40):
            for cam in cameras[: 1 + i % 3]:  # uneven rates: cam1 publishes most
                returned[cam].append(pub.publish_detections(frame(cam, 100 + i)))
        for cam in ("cam1-b", "cam10", "cam1"):  # cam1's marker goes last, after everything else
            pub.publish_status(status(cam, END))

        got1 = collect(sub1, is_end("cam1"))
        got10 = collect(sub10, is_end("cam10"))
        ends_seen: set[str] = set()
        got_all = collect(sub_all, lambda m: (m.get("reason") == END and ends_seen.add(m["camera"]) is None
                                              and len(ends_seen) == 3))

    for cam in cameras:
        assert returned[cam] == list(range(len(returned[cam]))), "seq must count from 0 without gaps"
    assert [len(returned[c]) for c in cameras] == [40, 26, 13]
    assert {t for t, _ in got1} == {"det/cam1/", "status/cam1/"}
    assert {m["camera"] for _, m in got1} == {"cam1"}
    assert [m["seq"] for _, m in got1 if "seq" in m] == returned["cam1"]
    assert {t for t, _ in got10} == {"det/cam10/", "status/cam10/"}
    assert [m["seq"] for _, m in got10 if "seq" in m] == returned["cam10"]
    for cam in cameras:  # the unfiltered subscriber got every camera, each with its own seq
        assert [m["seq"] for t, m in got_all if t == f"det/{cam}/"] == returned[cam]
    for topic, msg in got_all:
        VALIDATORS[msg["schema"]].validate(msg)
        assert topic == f"{'det' if 'seq' in msg else 'status'}/{msg['camera']}/"


def test_cam10_subscriber_never_sees_cam1(context: zmq.Context) -> None:
    with Publisher(context, ANY_PORT, 1000, 0) as pub, \
            Subscriber(pub.endpoint, camera="cam10", kinds=("det",), context=context) as sub10:
        wait_until_subscribed([sub10], lambda: pub.publish_detections(probe_frame("cam10")))
        for i in range(20):
            pub.publish_detections(frame("cam1", i))
            pub.publish_status(status("cam10", "not for a det-only subscriber"))
        pub.publish_detections(frame("cam10", 99))
        got = collect(sub10, lambda m: m["frame"] == 99)
    assert {t for t, _ in got} == {"det/cam10/"}
    assert [m["frame"] for _, m in got] == [99]


# ------------------------------------------------------------------ status

def test_status_messages_arrive_in_order_and_only_on_status_topics(context: zmq.Context) -> None:
    with Publisher(context, ANY_PORT, 1000, 0) as pub, \
            Subscriber(pub.endpoint, kinds=("status",), context=context) as sub:
        wait_until_subscribed([sub], lambda: pub.publish_status(status("cam7", PROBE)))
        pub.publish_detections(frame("cam7", 0))  # must not reach a status-only subscriber
        for state in CameraState:
            pub.publish_status(StatusEvent("cam7", state, 1_700_000_000.5, f"now {state.value}"))
        pub.publish_status(status("cam7", END, CameraState.STOPPED))
        got = collect(sub, is_end("cam7"))
    assert [m["state"] for _, m in got[:-1]] == [s.value for s in CameraState]
    assert {t for t, _ in got} == {"status/cam7/"}
    assert got[1][1] == {"schema": "pipeline.status/1", "camera": "cam7", "state": "up",
                         "at": 1_700_000_000.5, "reason": "now up"}
    for _, msg in got:
        VALIDATORS["pipeline.status/1"].validate(msg)


def test_subscriber_iterates_and_closes(context: zmq.Context) -> None:
    with Publisher(context, ANY_PORT, 1000, 0) as pub:
        sub = Subscriber(pub.endpoint, camera="camA", context=context)
        wait_until_subscribed([sub], lambda: pub.publish_status(status("camA", PROBE)))
        for i in range(3):
            pub.publish_detections(frame("camA", i))
        frames = []
        for topic, msg in sub:
            if not is_probe(msg):
                frames.append(msg["frame"])
            if len(frames) == 3:
                break
        sub.close()
        sub.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            sub.recv(0)
    assert frames == [0, 1, 2]


# ------------------------------------------------------------------ slow subscribers

def test_subscriber_that_stops_reading_never_blocks_the_publisher(context: zmq.Context) -> None:
    published = 5000
    with Publisher(context, ANY_PORT, 5, 0) as pub, \
            Subscriber(pub.endpoint, context=context, rcvhwm=5) as stuck:
        wait_until_subscribed([stuck], lambda: pub.publish_status(status("cam1", PROBE)))
        # from here on `stuck` reads nothing while ~15 MB of 3 kB messages pile up past every buffer
        slowest = 0.0
        seqs = []
        started = time.monotonic()
        for i in range(published):
            t0 = time.monotonic()
            seqs.append(pub.publish_detections(frame("cam1", i, n_detections=40)))
            slowest = max(slowest, time.monotonic() - t0)
        total = time.monotonic() - started
        assert seqs == list(range(published))
        assert slowest < 1.0, f"a publish call took {slowest:.3f} s"
        assert total < 30.0

        # Now read what the stuck subscriber was left with: ZeroMQ dropped the rest silently,
        # and the seq gaps are how a subscriber can tell.
        received = []
        while (item := stuck.recv(0.5)) is not None:
            if not is_probe(item[1]):
                received.append(item[1]["seq"])
    assert 0 < len(received) < published
    assert received == sorted(received)
    assert any(b - a > 1 for a, b in zip(received, received[1:])) or received[-1] < published - 1


# ------------------------------------------------------------------ metrics

def test_metrics_count_published_frames_per_camera(context: zmq.Context) -> None:
    metrics = Metrics()
    with Publisher(context, ANY_PORT, 100, 0, metrics) as pub:  # no subscribers: PUB drops silently
        for i in range(3):
            pub.publish_detections(frame("cam1", i))
        pub.publish_detections(frame("cam2", 0))
        pub.publish_status(status("cam1", "x"))
        bad = FrameDetections("cam1", 9, None, time.time(), 64, 48, (Detection("car", 1, float("nan"), (0, 0, 1, 1)),))
        with pytest.raises(MessageError, match=r"^det/cam1/ frame 9: detections\[0\]\.score"):
            pub.publish_detections(bad)
        assert pub.publish_detections(frame("cam1", 10)) == 3, "a refused message must not use up a seq"
    assert metrics.value("pipeline_frames_published_total", camera="cam1") == 4
    assert metrics.value("pipeline_frames_published_total", camera="cam2") == 1
    assert metrics.value("pipeline_capture_to_publish_seconds_count") == 5
    assert metrics.value("pipeline_messages_dropped_total", kind="det") == 0


def test_a_batch_with_one_unsendable_frame_still_sends_the_others(context: zmq.Context) -> None:
    metrics = Metrics()
    refused: list[tuple[int, str]] = []
    bad = FrameDetections("cam1", 1, None, time.time(), 64, 48, (Detection("car", 1, float("nan"), (0, 0, 1, 1)),))
    with Publisher(context, ANY_PORT, 100, 0, metrics) as pub:
        with Subscriber(pub.endpoint, context=context) as sub:
            wait_until_subscribed([sub], lambda: pub.publish_status(status("cam1", PROBE)))
            seqs = pub.publish_detections_batch([frame("cam1", 0), bad, frame("cam1", 2), frame("cam2", 0)],
                                                on_error=lambda fd, exc: refused.append((fd.index, str(exc))))
            got = []
            while (item := sub.recv(2.0)) is not None:
                if item[1].get("schema", "").startswith("pipeline.detections"):
                    got.append((item[1]["camera"], item[1]["frame"], item[1]["seq"]))
                if len(got) == 3:
                    break
    assert seqs == [0, None, 1, 0]
    assert [i for i, _ in refused] == [1] and "score" in refused[0][1]
    assert got == [("cam1", 0, 0), ("cam1", 2, 1), ("cam2", 0, 0)]
    assert metrics.value("pipeline_frames_published_total", camera="cam1") == 2


# ------------------------------------------------------------------ errors and lifecycle

def test_bind_in_use_is_a_one_line_error(context: zmq.Context) -> None:
    with Publisher(context, ANY_PORT, 100, 0) as first:
        with pytest.raises(PublishBindError) as info:
            Publisher(context, first.endpoint, 100, 0)
        assert str(info.value) == f"publish.bind: {first.endpoint}: Address already in use"
        # the first publisher is unaffected
        with Subscriber(first.endpoint, context=context) as sub:
            wait_until_subscribed([sub], lambda: first.publish_status(status("cam1", PROBE)))


def test_bad_addresses_are_one_line_errors(context: zmq.Context) -> None:
    with pytest.raises(PublishBindError, match=r"^publish\.bind: tcp://127\.0\.0\.1:notaport: Invalid argument$"):
        Publisher(context, "tcp://127.0.0.1:notaport", 100, 0)
    with pytest.raises(SubscriberConnectError, match=r"^subscribe: bogus://x: Protocol not supported$"):
        Subscriber("bogus://x", context=context)
    with pytest.raises(MessageError, match="camera id 'cam/1' must match"):
        Subscriber("tcp://127.0.0.1:1", camera="cam/1", context=context)


def test_closed_publisher_refuses_to_send(context: zmq.Context) -> None:
    pub = Publisher(context, ANY_PORT, 100, 0)
    pub.close()
    pub.close()
    with pytest.raises(RuntimeError, match="closed"):
        pub.publish_status(status("cam1", "late"))


def test_subscriber_without_context_owns_and_terminates_its_own(context: zmq.Context) -> None:
    with Publisher(context, ANY_PORT, 100, 0) as pub:
        with Subscriber(pub.endpoint) as sub:
            wait_until_subscribed([sub], lambda: pub.publish_status(status("cam1", PROBE)))
        assert sub._context.closed


# ------------------------------------------------------------------ waiting for subscribers

def free_tcp_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def test_wait_for_subscribers_counts_early_and_late_connections(context: zmq.Context) -> None:
    endpoint = free_tcp_endpoint()
    with Subscriber(endpoint, context=context) as early:  # connects (and retries) before the bind
        with Publisher(context, endpoint, 100, 0) as pub:
            assert pub.wait_for_subscribers(1, timeout_s=10.0) == 1
            pub.publish_status(status("cam1", "first message"))  # no probe: it must not be lost
            topic, msg = early.recv(5.0) or ("", {})
            assert (topic, msg.get("reason")) == ("status/cam1/", "first message")

    with Publisher(context, ANY_PORT, 100, 0) as pub:
        t0 = time.monotonic()
        assert pub.wait_for_subscribers(1, timeout_s=0.2) == 0
        assert 0.15 < time.monotonic() - t0 < 5.0
        with Subscriber(pub.endpoint, context=context) as one, Subscriber(pub.endpoint, context=context) as two:
            assert pub.wait_for_subscribers(2, timeout_s=10.0) == 2
            pub.publish_status(status("cam1", "hello both"))
            assert (one.recv(5.0) or ("", {}))[1].get("reason") == "hello both"
            assert (two.recv(5.0) or ("", {}))[1].get("reason") == "hello both"
