"""MessageReader: a worker's sends, read in bulk from a real pipe (multiprocessing's own framing)."""
from __future__ import annotations

import multiprocessing
import pickle
import threading

import numpy as np
import pytest

from pipeline.frame import Frame
from pipeline.workers.messages import DeviceRef, FrameMessage
from pipeline.workers.wire import MessageReader


def pipe():
    return multiprocessing.get_context("spawn").Pipe(duplex=True)


def test_every_send_that_arrived_comes_out_of_one_read() -> None:
    here, there = pipe()
    sends = [[i, "x" * i] for i in range(5)]
    for send in sends:
        there.send(send)
    got = MessageReader(here).read()
    assert got == sends


def test_large_sends_are_reassembled_across_reads() -> None:
    here, there = pipe()
    image = np.random.default_rng(1).integers(0, 255, (1080, 1920, 3), np.uint8)  # 6 MB: many reads
    sender = threading.Thread(target=lambda: [there.send(["small"]), there.send([image]), there.send(["after"])])
    sender.start()
    reader, got = MessageReader(here), []
    while len(got) < 3:
        got.extend(reader.read())
    sender.join()
    assert got[0] == ["small"] and got[2] == ["after"]
    assert np.array_equal(got[1][0], image)


def test_a_closed_pipe_is_eof_and_a_bad_message_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    here, there = pipe()
    there.send_bytes(b"not a pickle")
    there.send(["good"])
    assert MessageReader(here).read() == [["good"]]
    assert "could not be read" in caplog.text
    there.close()
    with pytest.raises(EOFError):
        MessageReader(here).read()


def test_a_frame_message_pickles_flat_and_comes_back_equal() -> None:
    ref = DeviceRef(7, b"\x01" * 64, 4096, (1080, 1920, 3), (2048, "bt709", True))
    message = FrameMessage(3, Frame("cam", 9, 0.3, 1700000000.5, 1920, 1080, ref), 11)
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(data)
    assert b"camera_id" not in data  # no field names: a tuple of values
    assert (back.run, back.token, back.frame.image) == (3, 11, ref)
    assert (back.frame.camera_id, back.frame.index, back.frame.pts, back.frame.captured_at,
            back.frame.width, back.frame.height) == ("cam", 9, 0.3, 1700000000.5, 1920, 1080)


def test_every_frame_field_survives_the_flat_pickle_and_with_image() -> None:
    """Frame.with_image and the flat pickle (_frame_message) copy Frame's fields by position, for speed.
    A field added to Frame would be dropped by both without a word (one with a default silently):
    this fails first, naming the two places to change."""
    from dataclasses import fields

    assert [f.name for f in fields(Frame)] == ["camera_id", "index", "pts", "captured_at", "width", "height",
                                               "image"], \
        "Frame changed: update Frame.with_image and workers/messages.py (FrameMessage.__reduce__, _frame_message)"
    frame = Frame("cam", 9, 0.3, 1700000000.5, 1920, 1080, "pixels")
    moved = frame.with_image("other")
    back = pickle.loads(pickle.dumps(FrameMessage(1, frame, None))).frame
    for f in fields(Frame):
        assert getattr(back, f.name) == getattr(frame, f.name), f.name
        if f.name != "image":
            assert getattr(moved, f.name) == getattr(frame, f.name), f.name
    assert moved.image == "other"
