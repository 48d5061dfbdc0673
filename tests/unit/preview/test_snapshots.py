"""Snapshot triggers and the writer: retention by count and bytes, and a full or read-only disk
drops snapshots (counted, logged once) without blocking anyone."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from pipeline.config import SnapshotsConfig
from pipeline.frame import Detection, FrameDetections
from pipeline.preview.snapshots import QUEUE_DEPTH, ClassAppearsTrigger, SnapshotNamer, SnapshotWriter


def counter() -> Counter:
    return Counter("snapshots", "test", ["result"], registry=CollectorRegistry())


def count(c: Counter, result: str) -> float:
    return c.labels(result)._value.get()


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)


def fd(labels: list[str], cam: str = "a") -> FrameDetections:
    return FrameDetections(cam, 0, None, 0.0, 10, 10, tuple(Detection(lb, 0, 0.9, (0, 0, 1, 1)) for lb in labels))


def test_class_appears_fires_once_per_appearance_and_respects_the_cooldown() -> None:
    now = [0.0]
    trigger = ClassAppearsTrigger(["person", "car"], cooldown_s=10, clock=lambda: now[0])
    assert trigger(fd(["person", "dog"])) == ["person"]
    assert trigger(fd(["person"])) == []  # still there: not a new appearance
    assert trigger(fd([])) == []
    now[0] = 5.0
    assert trigger(fd(["person", "car"])) == ["car"]  # person is back within its cooldown
    now[0] = 16.0
    assert trigger(fd([])) == [] and trigger(fd(["person"])) == ["person"]
    assert trigger(fd(["person"], cam="b")) == ["person"]  # per camera


def test_retention_keeps_the_newest_files_by_count_and_bytes(tmp_path: Path) -> None:
    c = counter()
    writer = SnapshotWriter(SnapshotsConfig(dir=tmp_path, max_files=5, max_bytes=350_000), c)
    namer = SnapshotNamer(tmp_path)
    paths = []
    for _ in range(8):
        request = namer.request("a", "class:person")
        paths.append(request.path)
        writer.submit(request.path, b"j" * 1000)
    wait_for(lambda: count(c, "written") == 8)
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == sorted(Path(p).name for p in paths[-5:])
    for _ in range(3):
        writer.submit(namer.request("a", "zone_enter").path, b"j" * 150_000)
    wait_for(lambda: count(c, "written") == 11)
    assert len(list(tmp_path.glob("*.jpg"))) == 2  # 2 x 150 kB fit under 350 kB, 3 do not
    assert [s.reason for s in writer.recent(10)] == ["zone_enter", "zone_enter"]
    writer.close()
    # a restart picks up the files already there
    again = SnapshotWriter(SnapshotsConfig(dir=tmp_path, max_files=5, max_bytes=350_000), counter())
    assert len(again.recent(10)) == 2
    again.close()


@pytest.fixture
def tmpfs(tmp_path: Path):
    """mount(options) -> a real tmpfs (root only); unmounted at teardown."""
    mounted = []

    def mount(options: str) -> Path:
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("mounting a tmpfs needs root")
        path = tmp_path / f"fs{len(mounted)}"
        path.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode:
            pytest.skip("mount is not allowed here")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], capture_output=True)


@pytest.mark.parametrize("options, result", [("size=64k", "dropped_disk_full"), ("ro,size=1m", "dropped_read_only")])
def test_a_full_or_read_only_disk_drops_snapshots_counted_and_logged_once(
        tmpfs, caplog: pytest.LogCaptureFixture, options: str, result: str) -> None:
    directory = tmpfs(options)
    c = counter()
    writer = SnapshotWriter(SnapshotsConfig(dir=directory), c)
    namer = SnapshotNamer(directory)
    with caplog.at_level(logging.WARNING, logger="pipeline.preview.snapshots"):
        for _ in range(5):
            writer.submit(namer.request("a", "class:car").path, b"j" * 100_000)  # > 64k: never fits
        wait_for(lambda: count(c, result) == 5)
        writer.close()
    assert count(c, result) == 5 and count(c, "written") == 0
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
    assert not list(directory.glob("*.tmp")) and not list(directory.glob(".*.tmp"))


def test_submit_never_waits_for_the_disk(tmp_path: Path) -> None:
    c = counter()
    writer = SnapshotWriter(SnapshotsConfig(dir=tmp_path, max_files=1000), c)
    namer = SnapshotNamer(tmp_path)
    n = QUEUE_DEPTH * 8
    for _ in range(n):
        writer.submit(namer.request("a", "class:car").path, b"j" * 200_000)
    wait_for(lambda: count(c, "written") + count(c, "dropped_queue_full") == n)
    writer.close()
    assert count(c, "written") + count(c, "dropped_queue_full") == n  # every snapshot accounted for
