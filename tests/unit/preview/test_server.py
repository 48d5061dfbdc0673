"""The preview's HTTP server in-process (real sockets, real HTTP client): the page and its files
come from the package, the JSON names no camera URL, a token guards a non-loopback bind, and a
frame goes from the taps to /api/cameras/<id>/frames/<n>.jpg annotated."""
from __future__ import annotations

import http.client
import json
import time

import cv2
import numpy as np
import pytest

from pipeline.app.camera_status import CameraStatusBoard
from pipeline.config import CameraConfig, PreviewConfig
from pipeline.frame import CameraState, Detection, Frame, FrameDetections, StatusEvent
from pipeline.observe.metrics import Metrics
from pipeline.preview import PreviewService
from pipeline.preview.drawing import class_colour_bgr

TOKEN = "t0ken-t0ken-t0ken-1"
CAMERAS = [CameraConfig(id="lobby", url="rtsp://viewer:hunter2@10.0.0.21/stream")]


@pytest.fixture
def preview(request: pytest.FixtureRequest):
    metrics = Metrics()
    board = CameraStatusBoard(metrics)
    board.update(StatusEvent("lobby", CameraState.UP, time.time(), "receiving frames"))
    config = PreviewConfig(bind="127.0.0.1:0", **getattr(request, "param", {}))
    service = PreviewService(config, metrics, board, lambda: CAMERAS)
    service.start()
    yield service
    service.close()


def test_api_carries_each_cameras_tracks_and_counts_or_null(preview: PreviewService) -> None:
    from pipeline.analytics.stage import CameraAnalytics, RuleCount

    assert json.loads(get(preview, "/api/cameras").body)["cameras"][0]["analytics"] is None  # tracking off
    snap = CameraAnalytics(3, (RuleCount("door", "person", "enter", 5), RuleCount("door", "person", "exit", 4)))
    service = PreviewService(PreviewConfig(bind="127.0.0.1:0"), Metrics(), preview.board, lambda: CAMERAS,
                             {"lobby": snap}.get)
    service.start()
    try:
        doc = json.loads(get(service, "/api/cameras").body)
    finally:
        service.close()
    assert doc["cameras"][0]["analytics"] == {"tracks": 3, "counts": [
        {"rule": "door", "label": "person", "what": "enter", "count": 5},
        {"rule": "door", "label": "person", "what": "exit", "count": 4}]}


def get(service: PreviewService, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


def test_page_and_its_files_are_served_from_the_package(preview: PreviewService) -> None:
    for path, ctype in (("/", "text/html"), ("/camera/lobby", "text/html"), ("/static/preview.js", "text/javascript"),
                        ("/static/preview.css", "text/css")):
        r = get(preview, path)
        assert r.status == 200 and r.getheader("Content-Type").startswith(ctype), path
        assert b"http://" not in r.body and b"https://" not in r.body, f"{path}: no CDN, no network"
    assert get(preview, "/static/../../config.py").status == 404


def test_frames_go_from_the_taps_to_an_annotated_jpeg_and_urls_stay_inside(preview: PreviewService) -> None:
    preview.board.update(StatusEvent("lobby", CameraState.RECONNECTING, time.time(),
                                     "opening rtsp://viewer:***@10.0.0.21/stream: refused by rtsp://10.0.0.21/x"))
    r = get(preview, "/api/cameras?watch=lobby")
    doc = json.loads(r.body)
    assert [c["id"] for c in doc["cameras"]] == ["lobby"] and doc["cameras"][0]["state"] == "reconnecting"
    assert doc["cameras"][0]["reason"] == "opening <camera url>: refused by <url>"
    assert b"rtsp" not in r.body and b"hunter2" not in r.body and b"10.0.0.21" not in r.body
    image = np.full((120, 160, 3), 90, np.uint8)
    preview.on_frame(Frame("lobby", 7, None, time.time(), 160, 120, image))
    det = Detection("person", 0, 0.9, (20.0, 30.0, 100.0, 110.0))
    preview.on_published(FrameDetections("lobby", 7, None, time.time(), 160, 120, (det,)), seq=3)
    deadline = time.monotonic() + 5
    while (frame := json.loads(get(preview, "/api/cameras").body)["cameras"][0]["frame"]) is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert frame["index"] == 7 and frame["seq"] == 3 and frame["detections"][0]["box"] == [20.0, 30.0, 100.0, 110.0]
    jpeg = get(preview, frame["url"])
    assert jpeg.status == 200 and jpeg.getheader("Content-Type") == "image/jpeg"
    bgr = cv2.imdecode(np.frombuffer(jpeg.body, np.uint8), cv2.IMREAD_COLOR)
    on_edge, inside = bgr[70, 20].astype(int), bgr[70, 60].astype(int)
    assert np.abs(on_edge - class_colour_bgr(0)).sum() < 120  # the box's left edge
    assert np.abs(inside - 90).sum() < 30  # the picture inside is untouched
    assert get(preview, "/api/cameras/lobby/frames/6.jpg").status == 404
    assert preview.cpu_seconds.labels("encode")._value.get() > 0  # the encode thread's own CPU time
    assert json.loads(get(preview, "/api/cameras").body)["preview_cpu_s"] > 0


@pytest.mark.parametrize("preview", [{"token": TOKEN}], indirect=True)
def test_a_token_is_required_and_traded_for_a_cookie(preview: PreviewService) -> None:
    assert get(preview, "/").status == 401
    assert get(preview, "/api/cameras", {"Authorization": "Bearer wrong-wrong-wrong"}).status == 401
    r = get(preview, f"/?token={TOKEN}")
    assert r.status == 303 and r.getheader("Location") == "/"
    cookie = r.getheader("Set-Cookie").split(";")[0]
    assert "HttpOnly" in r.getheader("Set-Cookie")
    assert get(preview, "/api/cameras", {"Cookie": cookie}).status == 200
    assert get(preview, "/api/cameras", {"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert preview.http_rejected.labels("unauthorized")._value.get() == 2


def test_a_port_in_use_is_a_one_line_startup_error(preview: PreviewService) -> None:
    taken = PreviewConfig(bind=f"127.0.0.1:{preview.port}")
    other = PreviewService(taken, Metrics(), CameraStatusBoard(Metrics()), lambda: CAMERAS)
    with pytest.raises(OSError, match=rf"^preview.bind: 127.0.0.1:{preview.port}: Address already in use$"):
        other.start()
    other.close()


def test_snapshots_for_a_class_that_appears_and_for_analytics_events(tmp_path) -> None:
    from pipeline.config import SnapshotsConfig

    metrics = Metrics()
    config = PreviewConfig(bind="127.0.0.1:0", snapshots=SnapshotsConfig(
        dir=tmp_path, classes=["person"], events=["zone_enter"], cooldown_s=60))
    service = PreviewService(config, metrics, CameraStatusBoard(metrics), lambda: CAMERAS)
    service.start()
    try:
        image = np.full((120, 160, 3), 90, np.uint8)
        person = (Detection("person", 0, 0.9, (20.0, 30.0, 100.0, 110.0)),)
        # nobody watches: the appearance asks for the next frame, annotated with its own detections
        service.on_published(FrameDetections("lobby", 1, None, time.time(), 160, 120, person), seq=0)
        service.on_frame(Frame("lobby", 2, None, time.time(), 160, 120, image))
        service.on_published(FrameDetections("lobby", 2, None, time.time(), 160, 120, person), seq=1)
        assert service.on_event("lobby", "line_cross") is None  # not configured
        path = service.on_event("lobby", "zone_enter")
        assert path is not None and path.startswith(str(tmp_path)) and "zone_enter" in path
        assert service.on_event("lobby", "zone_enter") is None  # cooling down
        service.on_frame(Frame("lobby", 3, None, time.time(), 160, 120, image))
        service.on_published(FrameDetections("lobby", 3, None, time.time(), 160, 120, ()), seq=2)
        deadline = time.monotonic() + 5
        while len(list(tmp_path.glob("*.jpg"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        names = sorted(p.name for p in tmp_path.glob("*.jpg"))
        assert len(names) == 2 and any("class-person" in n for n in names)
        assert (tmp_path / path.rsplit("/", 1)[1]).is_file()  # the path on_event promised
        listed = json.loads(get(service, "/api/snapshots").body)["snapshots"]
        assert {s["name"] for s in listed} == set(names)
        assert get(service, listed[0]["url"]).getheader("Content-Type") == "image/jpeg"
        assert get(service, "/snapshots/..%2Fetc%2Fpasswd").status == 404
    finally:
        service.close()


def test_the_preview_metrics_docs_metrics_md_lists_are_registered() -> None:
    # tests/integration/operations/test_operations_metrics.py leaves these out (its daemon has no
    # preview); here they must all exist once the service does
    import re
    from pathlib import Path

    from prometheus_client import generate_latest

    metrics = Metrics()
    PreviewService(PreviewConfig(bind="127.0.0.1:0"), metrics, CameraStatusBoard(metrics), lambda: CAMERAS)
    text = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(pipeline_preview_[a-z_]+)`", text, flags=re.M))
    exposed = generate_latest(metrics.registry).decode()
    assert documented and all(f"# TYPE {name} counter" in exposed for name in documented), \
        (documented, exposed)
