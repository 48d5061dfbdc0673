"""Event snapshots: which detections trigger one, and the thread that writes them to disk.

The writer never blocks its callers: a full queue (slow disk) or a failed write (full disk,
read-only folder) drops the snapshot, counts it in pipeline_preview_snapshots_total{result} and
logs the first time each kind of failure happens (the journal must not fill because the disk did).
"""
from __future__ import annotations

import calendar
import errno
import itertools
import logging
import os
import queue
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prometheus_client import Counter

from pipeline.config.preview import SnapshotsConfig
from pipeline.frame import FrameDetections
from pipeline.preview.tap import SnapshotRequest

log = logging.getLogger("pipeline.preview.snapshots")

QUEUE_DEPTH = 16
FILE_NAME = re.compile(r"^(?P<camera>[A-Za-z0-9_-]+)-(?P<at>\d{8}T\d{6}\.\d{3}Z)-(?P<n>\d+)-(?P<reason>[a-z_]+(?:-[A-Za-z0-9_ .-]+)?)\.jpg$")


@dataclass(frozen=True)
class SnapshotFile:
    name: str
    camera: str
    reason: str
    at: float  # Unix seconds (file mtime)
    size: int


class SnapshotNamer:
    """Paths decided when the trigger fires, so an event message can carry them before the file exists."""

    def __init__(self, directory: Path, wall_clock: Callable[[], float] = time.time) -> None:
        self._dir = directory
        self._wall = wall_clock
        self._counter = itertools.count()

    def request(self, camera_id: str, reason: str) -> SnapshotRequest:
        now = self._wall()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        safe = re.sub(r"[^A-Za-z0-9_ .-]", "_", reason.replace(":", "-"))[:48]
        path = self._dir / f"{camera_id}-{stamp}-{next(self._counter)}-{safe}.jpg"
        return SnapshotRequest(camera_id, reason, str(path))


class ClassAppearsTrigger:
    """A configured class is in this message but was not in the camera's previous one, and has not
    been snapshotted for this camera within cooldown_s."""

    def __init__(self, classes: list[str], cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._classes = frozenset(classes)
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._previous: dict[str, frozenset[str]] = {}
        self._last: dict[tuple[str, str], float] = {}

    def __call__(self, detections: FrameDetections) -> list[str]:
        cam = detections.camera_id
        present = frozenset(d.label for d in detections.detections if d.label in self._classes)
        appeared = present - self._previous.get(cam, frozenset())
        self._previous[cam] = present
        fired = []
        now = self._clock()
        for label in sorted(appeared):
            last = self._last.get((cam, label))
            if last is None or now - last >= self._cooldown_s:
                self._last[(cam, label)] = now
                fired.append(label)
        return fired

    def cooled_down(self, camera_id: str, kind: str) -> bool:
        """For analytics events: True (and the clock restarts) if `kind` may snapshot now."""
        now = self._clock()
        last = self._last.get((camera_id, kind))
        if last is not None and now - last < self._cooldown_s:
            return False
        self._last[(camera_id, kind)] = now
        return True


class SnapshotWriter:
    """One thread; files written whole (temp file, then rename); oldest removed past max_files/max_bytes."""

    def __init__(self, config: SnapshotsConfig, counter: Counter, cpu_seconds: Any = None) -> None:
        self._config = config
        self._counter = counter
        self._cpu_seconds = cpu_seconds  # a counter child: this thread's CPU time goes there
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._logged: set[str] = set()
        self._files: deque[tuple[Path, int]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._ready = self._prepare()
        self._thread = threading.Thread(target=self._run, name="preview-snapshots", daemon=True)
        self._thread.start()

    def _prepare(self) -> bool:
        directory = self._config.dir
        try:
            directory.mkdir(parents=True, exist_ok=True)
            existing = sorted((p.stat().st_mtime, p) for p in directory.glob("*.jpg") if FILE_NAME.match(p.name))
        except OSError as exc:
            self._log_once("prepare", "snapshots: %s: %s; snapshots are dropped until it works", directory,
                           exc.strerror)
            return False
        for _, path in existing:
            size = path.stat().st_size
            self._files.append((path, size))
            self._bytes += size
        return True

    def submit(self, path: str, jpeg: bytes) -> None:
        """Never blocks: a full queue drops this snapshot (counted, logged once)."""
        try:
            self._queue.put_nowait((path, jpeg))
        except queue.Full:
            self._drop("queue_full", "snapshots: the writer is behind (slow disk?); snapshots are dropped "
                                     "while it catches up")

    def recent(self, limit: int) -> list[SnapshotFile]:
        with self._lock:
            files = list(self._files)[-limit:]
        out = []
        for path, size in reversed(files):
            m = FILE_NAME.match(path.name)
            if m:
                at = calendar.timegm(time.strptime(m["at"][:15], "%Y%m%dT%H%M%S"))
                out.append(SnapshotFile(path.name, m["camera"], m["reason"], at, size))
        return out

    def path_of(self, name: str) -> Path | None:
        """A snapshot file by name, only if it is one of ours (no path tricks)."""
        if not FILE_NAME.match(name):
            return None
        with self._lock:
            for path, _ in self._files:
                if path.name == name:
                    return path
        return None

    def close(self, timeout: float = 1.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    # ---------------------------------------------------------------- writer thread

    def _run(self) -> None:
        from pipeline.preview.service import ThreadCpu

        cpu = ThreadCpu(self._cpu_seconds) if self._cpu_seconds is not None else None
        while True:
            item = self._queue.get()
            if cpu is not None:
                cpu.add()
            if item is None:
                return
            path, jpeg = item
            if not self._ready:
                self._ready = self._prepare()
                if not self._ready:
                    self._counter.labels("dropped_unwritable").inc()
                    continue
            self._write(Path(path), jpeg)

    def _write(self, path: Path, jpeg: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(jpeg)
            os.replace(tmp, path)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            reason = {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EROFS: "read_only",
                      errno.EACCES: "read_only", errno.EPERM: "read_only"}.get(exc.errno or 0, "write_error")
            self._drop(f"dropped_{reason}" if not reason.startswith("dropped") else reason,
                       f"snapshots: cannot write {path}: {exc.strerror}; snapshots are dropped (counted in "
                       f"pipeline_preview_snapshots_total)")
            return
        self._counter.labels("written").inc()
        with self._lock:
            self._files.append((path, len(jpeg)))
            self._bytes += len(jpeg)
            doomed = []
            while self._files and (len(self._files) > self._config.max_files or self._bytes > self._config.max_bytes):
                old, size = self._files.popleft()
                self._bytes -= size
                doomed.append(old)
        for old in doomed:
            try:
                old.unlink(missing_ok=True)
            except OSError as exc:
                self._log_once("unlink", "snapshots: cannot remove old %s: %s", old, exc.strerror)

    def _drop(self, result: str, message: str) -> None:
        if result == "queue_full":
            result = "dropped_queue_full"
        self._counter.labels(result).inc()
        self._log_once(result, "%s", message)

    def _log_once(self, key: str, fmt: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(fmt, *args)
