"""sd_notify over real unix datagram sockets (filesystem and abstract), the watchdog decision,
and the STATUS/WATCHDOG traffic of ServiceReporter."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.frame import CameraState, StatusEvent
from pipeline.app.camera_status import CameraStatusBoard
from pipeline.observe.metrics import Metrics
from pipeline.app.systemd_notify import SystemdNotifier, monotonic_usec, watchdog_seconds
from pipeline.app.service_status import FlowWatch, ServiceReporter, camera_summary


class NotifySocket:
    """What systemd binds: a datagram socket; `address` is what goes into NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(2.0)

    def recv(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def pending(self) -> list[dict[str, str]]:
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(dict(line.split("=", 1) for line in self.sock.recv(4096).decode().split("\n")))
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(2.0)


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    address = str(tmp_path / "notify.sock") if request.param == "path" else f"@pipeline-test-{os.getpid()}-{id(tmp_path)}"
    ns = NotifySocket(address)
    yield ns
    ns.sock.close()


def test_messages_reach_the_socket(notify_socket: NotifySocket) -> None:
    n = SystemdNotifier.from_environment({"NOTIFY_SOCKET": notify_socket.address})
    assert n.enabled
    assert n.ready("2 camera(s):\nall up")
    assert notify_socket.recv() == {"READY": "1", "STATUS": "2 camera(s): all up"}  # newline folded
    before = monotonic_usec()
    assert n.reloading()
    msg = notify_socket.recv()
    assert msg["RELOADING"] == "1" and before <= int(msg["MONOTONIC_USEC"]) <= monotonic_usec()
    n.watchdog()
    assert notify_socket.recv() == {"WATCHDOG": "1"}
    n.stopping()
    assert notify_socket.recv() == {"STOPPING": "1"}
    n.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    n = SystemdNotifier.from_environment({})
    assert not n.enabled and not n.ready("x") and not n.watchdog()


def test_a_vanished_socket_is_reported_once_and_never_raises(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    n = SystemdNotifier(str(tmp_path / "gone.sock"))
    assert not n.watchdog() and not n.watchdog()
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1


def test_watchdog_seconds_reads_usec_and_honours_the_pid() -> None:
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert watchdog_seconds({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None  # another process's
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_seconds({}) is None


def test_flow_watch_stalls_only_when_frames_wait_and_nothing_is_published() -> None:
    w = FlowWatch(stall_after_s=5.0, now=0.0)
    w.observe(decoded=10, published=10, dropped=0, now=1.0)
    assert w.moving(5.9)
    w.observe(decoded=0 + 30, published=20, dropped=2, now=8.0)  # publishing: progress
    assert w.moving(12.0)
    w.observe(decoded=40, published=20, dropped=2, now=9.0)  # frames wait, nothing published
    w.observe(decoded=40, published=20, dropped=2, now=13.0)
    assert w.moving(13.0) and not w.moving(13.1)  # last progress at 8.0
    # every waiting frame settles (dropped): idle, nothing hung
    w.observe(decoded=40, published=20, dropped=20, now=20.0)
    assert w.moving(24.0)
    # cameras reconnecting for an hour: nothing to move, still moving
    w.observe(decoded=40, published=20, dropped=20, now=3600.0)
    assert w.moving(3600.0)


def _board_with(metrics: Metrics, states: dict[str, CameraState]) -> CameraStatusBoard:
    board = CameraStatusBoard(metrics)
    for cam, state in states.items():
        board.update(StatusEvent(cam, state, time.time(), ""))
    return board


def test_camera_summary_counts_states_and_names_cameras_not_up() -> None:
    m = Metrics()
    m.frames_published.labels("a").inc(7)
    board = _board_with(m, {"a": CameraState.UP, "b": CameraState.UP, "gate": CameraState.RECONNECTING})
    assert camera_summary(board) == "3 camera(s): 2 up, 1 reconnecting [gate]; published 7"


def test_reporter_pings_while_frames_move_and_stops_when_they_stall(notify_socket: NotifySocket,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    m = Metrics()
    # the watchdog decides from the typed counters, never from the exported metrics read back by name
    monkeypatch.setattr(m.registry, "collect", lambda: pytest.fail("the registry was read back"))
    monkeypatch.setattr(m.registry, "get_sample_value", lambda *a, **k: pytest.fail("the registry was read back"))
    board = _board_with(m, {"a": CameraState.UP})
    n = SystemdNotifier(notify_socket.address, watchdog_s=4.0)  # pings every 1 s, stall after 2 s
    r = ServiceReporter(n, m, board, clock=lambda: now[0])
    r.ready()
    assert notify_socket.recv() == {"READY": "1", "STATUS": "1 camera(s): 1 up; published 0"}

    def step(decoded: int, published: int) -> list[dict[str, str]]:
        m.frames_decoded.labels("a").inc(decoded)
        m.frames_published.labels("a").inc(published)
        now[0] += 1.0
        r.tick()
        return notify_socket.pending()

    assert {"WATCHDOG": "1"} in step(5, 5)
    sent = step(5, 5)
    assert {"WATCHDOG": "1"} in sent and {"STATUS": "1 camera(s): 1 up; published 10"} in sent
    # inference hangs: frames keep arriving, none is published
    assert {"WATCHDOG": "1"} in step(5, 0) + step(5, 0)  # within the 2 s grace
    assert step(5, 0) == [] and step(5, 0) == []  # no more pings: systemd will restart us
    assert {"WATCHDOG": "1"} in step(0, 25)  # it recovers: pings resume
