"""app/publish_queue.py: detections batches wait for a slot of their own; status messages never wait on them."""
from __future__ import annotations

import threading

from pipeline.app.publish_queue import PublishQueue
from pipeline.frame import CameraState, DetectionsBatch, FrameDetections, StatusEvent


def batch(index: int) -> DetectionsBatch:
    return DetectionsBatch((FrameDetections("cam", index, None, 0.0, 64, 48, ()),))


def status() -> StatusEvent:
    return StatusEvent(camera_id="cam", state=CameraState.UP, at=0.0, reason="receiving frames")


def test_a_batch_beyond_the_bound_waits_until_the_publisher_takes_one() -> None:
    q = PublishQueue(max_batches=2, max_messages=4)
    q.put(batch(0))
    q.put(batch(1))
    third_in = threading.Event()
    producer = threading.Thread(target=lambda: (q.put(batch(2)), third_in.set()), daemon=True)
    producer.start()
    assert not third_in.wait(0.2)  # held back: postprocess waits, so the scheduler drops frames
    q.put(status())  # a camera's state still gets in
    assert q.get().items[0].index == 0
    assert third_in.wait(2.0)
    producer.join(2.0)
    rest = [q.get_nowait() for _ in range(q.qsize())]
    assert [type(x).__name__ for x in rest] == ["DetectionsBatch", "StatusEvent", "DetectionsBatch"]
    assert rest[2].items[0].index == 2


def test_status_messages_are_bounded_by_their_own_room() -> None:
    q = PublishQueue(max_batches=1, max_messages=2)
    q.put(batch(0))
    q.put(status())
    q.put(status())
    # the queue is now full (1 batch + 2 messages): a further message waits for room as before
    done = threading.Event()
    threading.Thread(target=lambda: (q.put(status()), done.set()), daemon=True).start()
    assert not done.wait(0.2)
    assert isinstance(q.get(), DetectionsBatch)
    assert done.wait(2.0)
    assert q.qsize() == 3
