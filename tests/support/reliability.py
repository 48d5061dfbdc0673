"""Shared pieces of the reliability tests (tests/integration/test_reliability_*.py) and
scripts/soak.py: misbehaving servers, readings of a running daemon (/metrics, /proc, its
summary lines) and measurements over published messages."""
from __future__ import annotations

import os
import re
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.tiny_model import build_tiny_yolo_onnx

LABELS = ["red", "green", "blue"]
SUMMARY = re.compile(r"summary (?P<camera>[A-Za-z0-9_-]+): final state (?P<state>\w+), decoded (?P<decoded>\d+), "
                     r"published (?P<published>\d+), dropped (?P<dropped>\d+), decode errors (?P<errors>\d+)")


def tiny_model_section(folder: Path, input_size: int = 64, **overrides: object) -> dict:
    """The `model:` section for the tiny real ONNX model (3 colour classes; one anchor per 8x8
    cell of the square input, so at most (input_size / 8)^2 detections per frame)."""
    path = build_tiny_yolo_onnx(folder / f"tiny{input_size}.onnx", num_classes=3, input_size=input_size)
    return {"path": str(path), "labels": LABELS, "input_size": input_size, "score_threshold": 0.6, **overrides}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- misbehaving servers

class SilentServer:
    """Accepts TCP connections and holds them open without ever sending a byte."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="silent-server")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            self._clients.append(conn)  # keep it open (and unread): the peer waits for an answer

    def url(self, scheme: str = "rtsp") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/stream"

    def close(self) -> None:
        self._listener.close()
        for conn in self._clients:
            conn.close()

    def __enter__(self) -> "SilentServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GarbageServer(SilentServer):
    """Accepts TCP connections and answers each with an endless stream of random bytes."""

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._clients.append(conn)
            threading.Thread(target=self._spew, args=(conn,), daemon=True, name="garbage-server").start()

    @staticmethod
    def _spew(conn: socket.socket) -> None:
        try:
            while True:
                conn.sendall(os.urandom(2048))
                time.sleep(0.02)
        except OSError:  # the client hung up or we closed
            pass


# ---------------------------------------------------------------- reading a running daemon

def scrape_metrics(port: int, timeout_s: float = 5.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics; {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as response:
        text = response.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric_sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum of every sample called `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class CameraSummary:
    state: str
    decoded: int
    published: int
    dropped: int
    decode_errors: int


def summaries(stderr: str) -> dict[str, CameraSummary]:
    """The per-camera summary lines the daemon logs when it exits."""
    out = {}
    for m in SUMMARY.finditer(stderr):
        out[m["camera"]] = CameraSummary(m["state"], int(m["decoded"]), int(m["published"]), int(m["dropped"]),
                                         int(m["errors"]))
    return out


# ---------------------------------------------------------------- measurements over messages

def detections(messages: list[tuple[str, dict]], camera: str) -> list[dict]:
    return [m for t, m in messages if t == f"det/{camera}/"]


def statuses(messages: list[tuple[str, dict]], camera: str) -> list[dict]:
    return [m for t, m in messages if t == f"status/{camera}/"]


def rate(messages: list[tuple[str, dict]], camera: str, start: float, end: float) -> float:
    """Detection messages per second for `camera` published in [start, end) (Unix seconds, from the
    messages' own published_at stamps)."""
    n = sum(1 for m in detections(messages, camera) if start <= m["published_at"] < end)
    return n / (end - start)


def missing_seqs(dets: list[dict]) -> int:
    """Messages lost between the first and last one received (gaps in seq)."""
    seqs = [m["seq"] for m in dets]
    if not seqs:
        return 0
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "seq must rise by one per message"
    return seqs[-1] - seqs[0] + 1 - len(seqs)
