"""The preview page of the real daemon (demo cameras, demo model, ONNX Runtime), driven by a real
headless browser (Debian chromium + chromium-driver through Selenium), then abused by raw HTTP
clients while a real ZeroMQ subscriber checks that publishing never skips a seq.

One daemon serves every test in this module (a daemon start is most of the cost).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.preview.drawing import LINE_BGR, ZONE_BGR, class_colour_rgb
from tests.support.daemon_harness import REPO, DaemonProcess, write_config

DEMO = REPO / "assets" / "demo"
CAMERAS = {"street": "street_1280x720.mp4", "plaza": "plaza_768x576.mp4", "yard": "yard_640x480.mp4"}
MAX_CLIENTS = 40
CLIENT_TIMEOUT_S = 3.0
SCREENSHOT_ENV = "PIPELINE_PREVIEW_SCREENSHOT"  # write the grid's screenshot here (docs/preview-grid.png)
# the yard's zone and line of configs/demo.yaml (pixels of 640x480); the other cameras have no rules
YARD_RULES = {"frame_size": [640, 480], "zones": [{"name": "shed", "points": [[40, 220], [300, 220], [300, 480], [40, 480]]}],
              "lines": [{"name": "path", "start": [400, 150], "end": [400, 480]}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_only_dir(path: Path) -> bool:
    """A real read-only file system (tmpfs mounted ro) at `path`; False where mounting is not allowed."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                        capture_output=True).returncode == 0
    return ok


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("preview")
    snapshots = tmp / "snapshots"
    read_only = _read_only_dir(snapshots)
    port, metrics_port = _free_port(), _free_port()
    cfg = write_config(
        tmp / "preview.yaml",
        [{"id": cid, "url": str(DEMO / clip), "loop": True, **({"analytics": YARD_RULES} if cid == "yard" else {})}
         for cid, clip in CAMERAS.items()],
        {"path": str(DEMO / "detector.onnx"), "labels": str(DEMO / "labels.txt"), "input_size": 320,
         "score_threshold": 0.4, "iou_threshold": 0.5},
        scheduler={"max_batch": 8, "max_wait_ms": 30, "queue_per_camera": 4},
        metrics={"bind": f"127.0.0.1:{metrics_port}"},
        analytics={"tracking": True, "high_score": 0.7, "new_track_score": 0.9},  # configs/demo.yaml's
        preview={"bind": f"127.0.0.1:{port}", "fps": 4, "max_clients": MAX_CLIENTS,
                 "client_timeout_s": CLIENT_TIMEOUT_S,
                 "snapshots": {"dir": str(snapshots), "classes": ["person", "car"], "cooldown_s": 0}})
    proc = DaemonProcess(cfg)
    try:
        proc.__enter__()
        base = f"http://127.0.0.1:{port}"
        proc.pump_until(lambda msgs: {m["camera"] for t, m in msgs if t.startswith("det/")} >= set(CAMERAS), 60)
        proc.base, proc.metrics_url, proc.read_only = base, f"http://127.0.0.1:{metrics_port}/metrics", read_only
        yield proc
    finally:
        proc.__exit__(None, None, None)
        if read_only:
            subprocess.run(["umount", str(snapshots)], capture_output=True)


def _metric(url: str, name: str, **labels: str) -> float:
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in body.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def _assert_no_seq_gap(messages: list[tuple[str, dict]]) -> None:
    for cid in CAMERAS:
        seqs = [m["seq"] for t, m in messages if t.startswith("det/") and m["camera"] == cid]
        assert seqs, f"no detections from {cid}"
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{cid}: seq gap"


@pytest.fixture
def browser():  # per test: quitting closes its keep-alive connections, which hold server slots
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Debian chromium and chromium-driver are not installed (scripts/test.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,640"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _tile_state(browser, cid: str) -> dict:
    return browser.execute_script(
        "const img = document.querySelector(`figure[data-camera='${arguments[0]}'] img`);"
        "return img ? {frame: img.dataset.frame, src: img.src, complete: img.complete && img.naturalWidth > 0,"
        " detections: img.dataset.detections || '[]'} : null;", cid)


def _wait(predicate, timeout: float, what: str, daemon) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        daemon.pump(0.2)  # keep reading the subscriber meanwhile
    pytest.fail(f"timed out waiting for {what}")


def _freeze(browser, cid: str) -> dict:
    """Copy what the tile's <img> shows right now into a canvas (the page swaps images several times
    a second), with the frame index and boxes the page holds for that image."""
    return browser.execute_script("""
        const img = document.querySelector(`figure[data-camera='${arguments[0]}'] img`);
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0);
        window.__frozen = c;
        return {frame: img.dataset.frame, detections: img.dataset.detections, width: c.width};
    """, cid)


def _sample(browser, points: list[tuple[float, float]]) -> list[list[int]]:
    """RGB of the frozen image at these natural-size pixel positions."""
    return browser.execute_script("""
        const g = window.__frozen.getContext('2d');
        return arguments[0].map(([x, y]) => Array.from(g.getImageData(Math.round(x), Math.round(y), 1, 1).data).slice(0, 3));
    """, [list(p) for p in points])


def test_grid_in_a_real_browser_shows_every_camera_and_draws_the_published_boxes(daemon, browser):
    browser.get(daemon.base + "/")
    _wait(lambda: len(browser.find_elements("css selector", "figure.tile")) == len(CAMERAS), 20, "a tile per camera",
          daemon)
    assert {e.get_attribute("data-camera") for e in browser.find_elements("css selector", "figure.tile")} == set(CAMERAS)
    first = _wait(lambda: (s := _tile_state(browser, "street")) and s["frame"] and s["complete"] and s, 20,
                  "the street tile's first frame", daemon)
    second = _wait(lambda: (s := _tile_state(browser, "street")) and s["frame"] not in ("", first["frame"])
                   and s["complete"] and s, 20, "a newer street frame", daemon)
    assert second["src"] != first["src"]

    # Boxes: the frame the tile shows, its detections as published on ZeroMQ, and the pixels at
    # each box's left edge in the browser's copy of the image.
    frozen = _freeze(browser, "street")
    frame = int(frozen["frame"])
    daemon.pump_until(lambda msgs: any(m.get("frame") == frame and m["camera"] == "street" for t, m in msgs), 10)
    published = next(m for t, m in daemon.messages if t.startswith("det/") and m["camera"] == "street"
                     and m["frame"] == frame)
    assert published["detections"], "the street clip has detections in every frame"
    scale = frozen["width"] / 1280  # the grid's tiles are encoded at preview.tile_width (640)
    assert scale == 0.5
    shown = [v for d in json.loads(frozen["detections"]) for v in d["box"]]
    assert shown == pytest.approx([v for d in published["detections"] for v in d["box"]], abs=0.11)
    hits, misses = 0, []
    for det in published["detections"]:
        x1, y1, x2, y2 = (v * scale for v in det["box"])
        if y2 - y1 < 24:
            continue
        colour = class_colour_rgb(det["class_id"])
        x = min(round(x1), frozen["width"] - 1)
        for k in range(5):  # below the label, along the left edge; the line is 2 px wide, JPEG blurs it
            y = y1 + 12 + (y2 - y1 - 16) * k / 4
            near = _sample(browser, [(min(max(x + dx, 0), frozen["width"] - 1), y) for dx in (-1, 0, 1)])
            inside = _sample(browser, [(min(x + 8, frozen["width"] - 1), y)])[0]
            best = min(near, key=lambda p: sum(abs(a - b) for a, b in zip(p, colour)))
            if sum(abs(a - b) for a, b in zip(best, colour)) < 150 and best != inside:
                hits += 1
            else:
                misses.append((det["label"], round(x1), round(y), best, inside))
    total = hits + len(misses)
    assert total >= 5 and hits >= 0.9 * total, f"{hits}/{total} left-edge pixels have the class colour: {misses}"

    if os.environ.get(SCREENSHOT_ENV):
        _wait(lambda: all((s := _tile_state(browser, c)) and s["complete"] for c in CAMERAS), 20, "every tile", daemon)
        browser.save_screenshot(os.environ[SCREENSHOT_ENV])

    # one camera's own page: frames at max_width (the source's 1280 here) and the detections as a table
    browser.get(daemon.base + "/camera/street")
    _wait(lambda: (s := _tile_state(browser, "street")) and s["complete"]
          and _freeze(browser, "street")["width"] == 1280, 20, "a full-size street frame", daemon)
    assert len(browser.find_elements("css selector", "figure.tile")) == 1
    _wait(lambda: browser.find_elements("css selector", "#detections tbody tr"), 10, "the detections table", daemon)

    body = urllib.request.urlopen(daemon.base + "/api/cameras", timeout=5).read().decode()
    assert "assets/demo" not in body and ".mp4" not in body, "camera URLs must not reach the page"
    daemon.pump(0.5)
    _assert_no_seq_gap(daemon.messages)


def _coloured(browser, points: list[tuple[float, float]], across: tuple[int, int], bgr: tuple[int, int, int]) -> int:
    """How many of these points of the frozen image have the colour within a pixel across the drawn
    line (it is 2 px wide, and JPEG blurs it)."""
    rgb, (dx, dy) = bgr[::-1], across
    hits = 0
    for x, y in points:
        near = _sample(browser, [(x + d * dx, y + d * dy) for d in (-1, 0, 1)])
        hits += min(sum(abs(a - b) for a, b in zip(p, rgb)) for p in near) < 150
    return hits


def _api_cameras(daemon) -> dict[str, dict]:
    doc = json.loads(urllib.request.urlopen(daemon.base + "/api/cameras", timeout=5).read())
    return {c["id"]: c for c in doc["cameras"]}


def _published_counts(daemon, cid: str) -> dict[tuple[str, str, str], int]:
    """The running counts of the camera's last event message (pipeline.events/1) on ZeroMQ."""
    events = [m for t, m in daemon.messages if t.startswith("evt/") and m["camera"] == cid]
    if not events:
        return {}
    return {(rule, label, what): n for rule, labels in events[-1]["counts"].items()
            for label, whats in labels.items() for what, n in whats.items()}


def test_zone_and_line_counts_reach_the_api_and_the_page_as_published(daemon, browser):
    # the API: live tracks and running counts per camera; null where the camera has no rules yet
    cams = _wait(lambda: (c := _api_cameras(daemon)) and c["yard"]["analytics"]
                 and c["yard"]["analytics"]["counts"] and c, 30, "the yard's first zone/line count", daemon)
    yard = cams["yard"]["analytics"]
    assert set(yard) == {"tracks", "counts"} and yard["tracks"] >= 0
    for c in yard["counts"]:
        assert set(c) == {"rule", "label", "what", "count"} and c["rule"] in ("shed", "path") and c["count"] >= 1
    # every camera is tracked (tracking is global); only the yard has rules, so only it counts
    assert cams["street"]["analytics"] is not None and cams["street"]["analytics"]["counts"] == []
    # what the API said is what the daemon publishes: each count reaches the event stream (events are
    # published after the analytics stage counted them, so the subscriber catches up, never goes past)
    api = {(c["rule"], c["label"], c["what"]): c["count"] for c in yard["counts"]}
    assert daemon.pump_until(lambda msgs: all(_published_counts(daemon, "yard").get(k, 0) >= n for k, n in api.items()),
                             15), (api, _published_counts(daemon, "yard"))

    # the grid: the yard's tile names its rules; the yard's own page lists its counts in a table
    browser.get(daemon.base + "/")
    text = _wait(lambda: (e := browser.find_elements("css selector", "figure[data-camera='yard'] .analytics"))
                 and e[0].text, 20, "the yard tile's counts", daemon)
    assert "track" in text and ("shed:" in text or "path:" in text), text
    # the rules are drawn where they count: the path line (x = 400 of 640, y 150..480) and the shed's
    # top, left and right edges (y = 220; x = 40 and 300) in their colours (the yard's tile is its
    # source size, 640); objects' boxes and filled labels cover some points, so not all must match
    _wait(lambda: (s := _tile_state(browser, "yard")) and s["frame"] and s["complete"], 20, "a yard frame", daemon)
    frozen = _freeze(browser, "yard")
    assert frozen["width"] == 640

    on_line = _coloured(browser, [(400, 165 + 15 * k) for k in range(20)], (1, 0), LINE_BGR)
    on_zone = (_coloured(browser, [(55 + 12 * k, 220) for k in range(20)], (0, 1), ZONE_BGR)
               + _coloured(browser, [(x, 235 + 12 * k) for k in range(20) for x in (40, 300)], (1, 0), ZONE_BGR))
    # of 20 and 60; usually all but a few, none when nothing is drawn; a box whose vertical edge runs
    # along the line for its height (~150 px) hides half of the line's points
    assert on_line >= 5 and on_zone >= 30, (on_line, on_zone)
    browser.get(daemon.base + "/camera/yard")
    # read in one script: the page replaces the rows on every poll
    rows = _wait(lambda: browser.execute_script(
        "return Array.from(document.querySelectorAll('#counts tbody tr'), (r) => Array.from(r.cells, (c) => c.textContent));"),
        20, "the counts table", daemon)
    shown = {tuple(r[:3]): int(r[3]) for r in rows}
    for key, n in api.items():  # counts only grow: the page, read later, shows at least what the API said
        assert shown.get(key, 0) >= n, (key, n, shown)
    assert browser.find_element("css selector", "#tracks").text.endswith(("live track", "live tracks"))


def test_bad_clients_are_refused_counted_and_logged_once_while_publishing_goes_on(daemon):
    host, port = "127.0.0.1", int(daemon.base.rsplit(":", 1)[1])
    before = len(daemon.messages)
    daemon.pump(0.5)  # the browser test's connections close
    # 50 clients at once: each holds its connection open before sending; MAX_CLIENTS are served
    conns = [socket.create_connection((host, port), timeout=10) for _ in range(50)]
    time.sleep(0.5)
    refused = set(select.select(conns, [], [], 0)[0])  # those already answered (503) without asking
    for c in conns:  # every request first, then the answers: none waits on another's
        if c not in refused:
            try:
                c.sendall(b"GET /api/cameras HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
    codes = []
    for c in conns:
        try:
            codes.append(c.recv(64).split(b" ")[1].decode())
        except (OSError, IndexError):
            codes.append("closed")
        c.close()
    assert codes.count("200") == MAX_CLIENTS and codes.count("503") == 50 - MAX_CLIENTS, codes

    # a 1 MB header, twice
    for _ in range(2):
        with socket.create_connection((host, port), timeout=10) as c:
            try:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
                answer = c.recv(64)
            except OSError:  # the server answers and closes after 64 KiB: the rest of ours may be reset
                answer = b""
            assert not answer or b" 431 " in answer, answer
    # a client that asks for frames and never reads: many pipelined requests, nothing read
    slow = socket.create_connection((host, port), timeout=10)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    frame_url = json.loads(urllib.request.urlopen(daemon.base + "/api/cameras?watch=street", timeout=5).read())
    url = next(c["frame"]["url"] for c in frame_url["cameras"] if c["id"] == "street")
    try:
        slow.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 200)
    except OSError:
        pass
    # and one that connects and never sends
    idle = socket.create_connection((host, port), timeout=10)
    daemon.pump(CLIENT_TIMEOUT_S * 2 + 1)
    slow.close()
    idle.close()

    # the page still works for a well-behaved client
    assert urllib.request.urlopen(daemon.base + "/api/cameras", timeout=5).status == 200
    counts = {r: _metric(daemon.metrics_url, "pipeline_preview_http_rejected_total", reason=r)
              for r in ("busy", "too_large", "timeout")}
    assert counts["busy"] == 50 - MAX_CLIENTS
    assert counts["too_large"] == 2
    assert counts["timeout"] >= 2  # the reader that stalled and the client that never sent
    if daemon.read_only:
        daemon.pump_until(lambda _: _metric(daemon.metrics_url, "pipeline_preview_snapshots_total",
                                            result="dropped_read_only") >= 1, 20)
        assert _metric(daemon.metrics_url, "pipeline_preview_snapshots_total", result="dropped_read_only") >= 1
    daemon.pump(0.5)
    assert len(daemon.messages) > before
    _assert_no_seq_gap(daemon.messages)
    daemon.terminate()
    run = daemon.finish(20)
    assert run.returncode == 0, run.stderr[-2000:]
    _assert_no_seq_gap(run.messages)
    for needle in ("more than 40 connections", "over 64 KiB", "sent or read nothing"):
        assert run.stderr.count(needle) == 1, f"{needle!r} logged {run.stderr.count(needle)} times"
    if daemon.read_only:
        assert run.stderr.count("snapshots: cannot write") == 1
