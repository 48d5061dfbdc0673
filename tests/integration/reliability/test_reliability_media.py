"""Corrupt and odd media files next to a healthy one, in the real daemon: no crash, a clear final
status per camera, and the healthy camera loses nothing."""
from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.support.daemon_harness import run_daemon, write_config
from tests.support.reliability import detections, missing_seqs, statuses, summaries, tiny_model_section
from tests.support.media import (corrupt_copy, faststart_copy, make_clip, make_resolution_change_clip,
                                 make_vfr_clip, truncated_copy)

# Xvid with the encoder bugs the name refers to; FFmpeg detects them and decodes all 270 frames.
MEGAMIND_BUGY = Path("/usr/share/doc/opencv-doc/examples/data/Megamind_bugy.avi")
GOOD_FRAMES = 60


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return tiny_model_section(tmp_path_factory.mktemp("model"))


def test_corrupt_and_odd_files_beside_a_healthy_one(tmp_path: Path, tiny_model: dict) -> None:
    assert MEGAMIND_BUGY.is_file(), "opencv-doc is part of the test setup (scripts/test.sh)"
    full = make_clip(tmp_path / "full.mp4", 160, 120, 40, fps=25)
    random_bytes = tmp_path / "random.mp4"
    # seeded: with fresh random bytes FFmpeg's format probe now and then found a "video" in them
    random_bytes.write_bytes(bytes(range(256)) * 64 + __import__("random").Random(0).randbytes(64 * 1024))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    sizes = [(160, 120), (320, 240), (96, 64)]
    vfr, vfr_pts = make_vfr_clip(tmp_path / "vfr.mkv")
    files = {
        "good": (make_clip(tmp_path / "good.mp4", 200, 150, GOOD_FRAMES, fps=25), False),
        "bugy": (MEGAMIND_BUGY, False),
        "garbled": (corrupt_copy(make_clip(tmp_path / "src.mp4", 160, 120, 60, fps=25), tmp_path / "garbled.mp4",
                                 chunks=30, chunk_bytes=256), False),
        "cut_index": (truncated_copy(full, tmp_path / "cut_index.mp4", 0.5), False),  # moov at the end: gone
        "cut_tail": (truncated_copy(faststart_copy(full, tmp_path / "fs.mp4"), tmp_path / "cut_tail.mp4", 0.5), False),
        "random": (random_bytes, False),
        "empty": (empty, False),
        "reschange": (make_resolution_change_clip(tmp_path / "reschange.ts", sizes, frames_each=10), False),
        "vfr": (vfr, True),  # paced: the pacer must follow the irregular pts
    }
    cams = [{"id": cid, "url": str(path), "realtime": paced} for cid, (path, paced) in files.items()]
    cfg = write_config(tmp_path / "cfg.yaml", cams, tiny_model,
                       scheduler={"max_batch": 8, "max_wait_ms": 20, "queue_per_camera": 4})
    run = run_daemon(cfg, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    final = {cid: statuses(run.messages, cid)[-1] for cid in files}
    counts = summaries(run.stderr)

    # The healthy camera: every frame, in order, untouched by its neighbours.
    good = detections(run.messages, "good")
    assert [m["frame"] for m in good] == list(range(GOOD_FRAMES)) and missing_seqs(good) == 0
    assert final["good"]["state"] == "eof"

    # Unopenable files: down at once, with FFmpeg's reason.
    for cid in ("cut_index", "random", "empty"):
        assert final[cid]["state"] == "down", final[cid]
        assert final[cid]["reason"].startswith("cannot open: "), final[cid]
        assert detections(run.messages, cid) == []
    assert final["cut_index"]["reason"] == "cannot open: Invalid data found when processing input"

    bugy = detections(run.messages, "bugy")
    assert final["bugy"]["state"] == "eof" and [m["frame"] for m in bugy] == list(range(270))
    assert {(m["width"], m["height"]) for m in bugy} == {(720, 528)}

    # Broken inside: what can be decoded is published, the rest is counted as decode errors.
    assert final["garbled"]["state"] == "eof" and 0 < len(detections(run.messages, "garbled")) <= 60
    assert counts["garbled"].decode_errors > 0, counts["garbled"]
    cut = detections(run.messages, "cut_tail")
    assert final["cut_tail"]["state"] == "eof" and 0 < len(cut) < 40
    assert [m["frame"] for m in cut] == list(range(len(cut)))

    # A resolution change mid-stream: every frame, each with its own size (boxes in its pixels).
    res = detections(run.messages, "reschange")
    assert final["reschange"]["state"] == "eof"
    assert [(m["width"], m["height"]) for m in res] == [s for s in sizes for _ in range(10)]

    # Variable frame rate: every frame with its own pts, released at its pts.
    vfr_dets = detections(run.messages, "vfr")
    assert final["vfr"]["state"] == "eof"
    assert [m["pts"] for m in vfr_dets] == pytest.approx(vfr_pts, abs=1e-3)
    wall = [b["captured_at"] - a["captured_at"] for a, b in zip(vfr_dets, vfr_dets[1:])]
    media = [b - a for a, b in zip(vfr_pts, vfr_pts[1:])]
    assert statistics.median(abs(w - m) for w, m in zip(wall, media)) < 0.02, list(zip(wall, media))

    for cid in files:  # nothing silently lost anywhere: decoded = published + dropped
        c = counts[cid]
        assert c.decoded == c.published + c.dropped, (cid, c)
        assert c.published == len(detections(run.messages, cid)), (cid, c)
