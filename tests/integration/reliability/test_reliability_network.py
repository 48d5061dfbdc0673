"""Network cameras that die, stall, lie or refuse us, next to healthy cameras, in the real daemon.

Every test runs `python -m pipeline run` as a subprocess with real GStreamer RTSP server processes,
plain TCP servers that stay silent or talk garbage, and real H.264 files; what the daemon publishes
is read by a real ZeroMQ subscriber. Rates are measured from the messages' own timestamps.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.daemon_harness import DaemonProcess, write_config
from tests.support.reliability import (GarbageServer, SilentServer, detections, missing_seqs, rate,
                                                   statuses, summaries, tiny_model_section)
from tests.support.media import make_clip
from tests.support.rtsp_server import RtspServer, require_rtsp_server

FPS = 25
HEALTHY = ("lobby", "yard")  # looping files, paced at 25 fps like live cameras


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return tiny_model_section(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module", autouse=True)
def gstreamer() -> None:
    require_rtsp_server()


def healthy_cameras(folder: Path) -> list[dict]:
    return [{"id": cid, "url": str(make_clip(folder / f"{cid}.mp4", 160, 120, 2 * FPS, fps=FPS)), "loop": True}
            for cid in HEALTHY]


def retry_delays(events: list[dict]) -> list[float]:
    return [float(e["reason"].rsplit("retry in ", 1)[1].split()[0]) for e in events if e["state"] == "reconnecting"]


def test_killed_rtsp_server_reconnects_fast_and_costs_the_others_nothing(tmp_path: Path, tiny_model: dict) -> None:
    server = RtspServer(mount="/street", width=320, height=240, fps=FPS).start()
    try:
        cams = [{"id": "street", "url": server.url, "timeout_s": 2}, *healthy_cameras(tmp_path)]
        cfg = write_config(tmp_path / "cfg.yaml", cams, tiny_model)
        with DaemonProcess(cfg) as d:
            everyone = ("street", *HEALTHY)
            assert d.pump_until(lambda ms: all(len(detections(ms, c)) >= FPS for c in everyone), 30), \
                d.stderr_path.read_text()
            d.pump(4.0)  # the "before" window
            killed_at = time.time()
            server.kill()  # SIGKILL: the process and its TCP connections vanish

            def lost(ms: list) -> list[dict]:
                return [s for s in statuses(ms, "street") if s["state"] == "reconnecting" and s["at"] >= killed_at]

            assert d.pump_until(lambda ms: bool(lost(ms)), 3.0), statuses(d.messages, "street")
            assert lost(d.messages)[0]["at"] - killed_at < 2.0, lost(d.messages)[0]
            d.pump_until(lambda ms: len(lost(ms)) >= 3, 4.0)  # the server stays dead: backing off
            restart_at = time.time()
            server.start()  # same port, same URL
            back_at = time.time()
            assert d.pump_until(lambda ms: any(m["captured_at"] > back_at for m in detections(ms, "street")), 8.0)
            first_new = next(m for m in detections(d.messages, "street") if m["captured_at"] > back_at)
            d.pump(2.0)
            d.terminate()
            run = d.finish(timeout=10)
        assert run.returncode == 0, run.stderr

        # Status and backoff of the dead camera.
        delays = retry_delays(lost(run.messages))
        assert len(delays) >= 3 and delays == sorted(delays) and delays[1] > delays[0], delays
        assert all("Connection refused" in s["reason"] for s in lost(run.messages)[1:]), lost(run.messages)
        # Back within 5 s of the server listening again (not after the backoff's next 4-10 s).
        print(f"measured: reconnecting {lost(run.messages)[0]['at'] - killed_at:.3f} s after the kill, "
              f"first new frame published {first_new['published_at'] - back_at:.2f} s after the restart")
        assert first_new["published_at"] - back_at < 5.0, (first_new, back_at)
        ups = [s for s in statuses(run.messages, "street") if s["state"] == "up" and s["at"] > killed_at]
        assert ups, statuses(run.messages, "street")

        # The others: rate before vs. while the camera was gone vs. while it came back.
        windows = {"outage": (killed_at, restart_at), "recovery": (restart_at, first_new["published_at"] + 1.0)}
        for cid in HEALTHY:
            before = rate(run.messages, cid, killed_at - 4.0, killed_at)
            assert before == pytest.approx(FPS, rel=0.1), (cid, before)
            for name, (start, end) in windows.items():
                assert rate(run.messages, cid, start, end) == pytest.approx(before, rel=0.1), (cid, name)
        for cid in ("street", *HEALTHY):
            assert missing_seqs(detections(run.messages, cid)) == 0
            assert detections(run.messages, cid)[0]["seq"] == 0
        frames = [m["frame"] for m in detections(run.messages, "street")]
        assert frames == sorted(frames)  # frame indices keep counting across the reconnect
    finally:
        server.kill()


def test_bad_network_cameras_each_get_a_reason_and_block_nothing(tmp_path: Path, tiny_model: dict) -> None:
    frozen = RtspServer(mount="/frozen", width=160, height=120, fps=FPS).start()
    locked = RtspServer(mount="/locked", width=160, height=120, fps=FPS, credentials=("admin", "wrong-pw"),
                        required_credentials=("admin", "right-pw")).start()
    with SilentServer() as silent, GarbageServer() as garbage:
        try:
            bad = {"silent": silent.url(), "garbage": garbage.url(), "nodns": "rtsp://camera.invalid/stream",
                   "locked": locked.url, "frozen": frozen.url}
            cams = [*healthy_cameras(tmp_path), *({"id": c, "url": u, "timeout_s": 2} for c, u in bad.items())]
            cfg = write_config(tmp_path / "cfg.yaml", cams, tiny_model)
            with DaemonProcess(cfg) as d:
                assert d.pump_until(lambda ms: len(detections(ms, "frozen")) >= 5, 30), d.stderr_path.read_text()
                frozen_at = time.time()
                frozen.pause()  # SIGSTOP: the TCP connection stays up, nothing flows
                d.pump_until(lambda ms: len([s for s in statuses(ms, "frozen") if s["state"] == "reconnecting"]) >= 2,
                             10)
                d.pump(2.0)
                d.terminate()
                stopping = time.monotonic()
                run = d.finish(timeout=10)
                assert time.monotonic() - stopping < 5.0, "blocked FFmpeg readers must not hold up SIGTERM"
        finally:
            frozen.kill()
            locked.kill()
    assert run.returncode == 0, run.stderr

    def reasons(cid: str) -> list[str]:
        return [s["reason"] for s in statuses(run.messages, cid) if s["state"] == "reconnecting"]

    assert reasons("silent")[0] == "cannot connect: no answer within 2 s; retry in 0.5 s"
    assert reasons("garbage")[0].startswith("cannot connect: the server's answer is not RTSP (starts with b")  # repr may pick either quote
    assert reasons("nodns")[0].startswith("cannot connect: cannot resolve host camera.invalid: ")
    assert reasons("locked")[0] == "cannot connect: Server returned 401 Unauthorized (authorization failed); retry in 0.5 s"
    # SIGSTOP may land mid-frame: the frame's last slices never come and the decoder rejects what did,
    # so the 2 s without a picture is reported with that error instead of as no data at all
    assert reasons("frozen")[0] in ("stalled: no data for 2 s; retry in 0.5 s",
                                    "no decodable picture for 2 s (last error: decode: Invalid data found when "
                                    "processing input); retry in 0.5 s")
    assert reasons("frozen")[1] == "cannot connect: no answer within 2 s; retry in 1 s"
    stalled_at = next(s["at"] for s in statuses(run.messages, "frozen") if s["state"] == "reconnecting")
    assert 1.5 <= stalled_at - frozen_at < 3.0  # one timeout_s after the last packet
    assert all("wrong-pw" not in s["reason"] for s in statuses(run.messages, "locked"))
    for cid in bad:
        assert statuses(run.messages, cid)[-1]["state"] == "stopped"
        if cid != "frozen":
            assert detections(run.messages, cid) == []

    # Startup waited for none of them: the healthy cameras published before the slowest bad
    # camera had even given up its first attempt, and kept their full rate throughout.
    first_silent_failure = next(s["at"] for s in statuses(run.messages, "silent") if s["state"] == "reconnecting")
    last_at = max(m["published_at"] for m in detections(run.messages, HEALTHY[0]))
    for cid in HEALTHY:
        dets = detections(run.messages, cid)
        assert dets[0]["published_at"] < first_silent_failure
        assert missing_seqs(dets) == 0
        assert rate(run.messages, cid, last_at - 6.0, last_at) == pytest.approx(FPS, rel=0.1)
    counts = summaries(run.stderr)
    assert set(counts) == set(HEALTHY) | set(bad), run.stderr
