from __future__ import annotations

from pipeline.bridge.buffer import BridgeMessage, MessageBuffer, parse_topic


def _msg(i: int) -> BridgeMessage:
    return BridgeMessage("det", "cam", str(i).encode())


def test_topics_split_into_kind_and_camera_without_a_fixed_list_of_kinds() -> None:
    assert parse_topic(b"det/cam1/") == ("det", "cam1")
    assert parse_topic(b"evt/gate-2/") == ("evt", "gate-2")
    assert parse_topic(b"anything/x/") == ("anything", "x")
    for bad in (b"det/cam1", b"det//", b"/cam/", b"det/a/b/", b"\xff/a/"):
        assert parse_topic(bad) is None, bad
    assert BridgeMessage("status", "c", b"{}").topic == "status/c/"


def test_full_buffer_drops_the_oldest_and_counts() -> None:
    buf = MessageBuffer(3)
    assert all(buf.put(_msg(i)) for i in range(3))
    assert not buf.put(_msg(3)) and not buf.put(_msg(4))
    assert buf.dropped == 2
    assert [m.payload for m in buf.take(10, 0)] == [b"2", b"3", b"4"]
    assert buf.take(10, 0.01) == []


def test_put_back_goes_first_in_order_and_overflow_is_counted() -> None:
    buf = MessageBuffer(4)
    for i in range(2, 4):
        buf.put(_msg(i))
    assert buf.put_back([_msg(0), _msg(1)]) == 0
    assert [m.payload for m in buf.take(10, 0)] == [b"0", b"1", b"2", b"3"]
    for i in range(3, 6):
        buf.put(_msg(i))
    assert buf.put_back([_msg(0), _msg(1), _msg(2)]) == 2  # room for one: the newest of them stays
    assert [m.payload for m in buf.take(10, 0)] == [b"2", b"3", b"4", b"5"]
    assert buf.dropped == 2
