"""Per-camera state as reported by sources, for status lines, summaries and health checks."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from pipeline.frame import CameraState, StatusEvent
from pipeline.observe.metrics import CameraCounts, Metrics


@dataclass(frozen=True)
class CameraSnapshot:
    camera_id: str
    state: CameraState
    reason: str
    decoded: int
    published: int
    dropped: int
    decode_errors: int


class CameraStatusBoard:
    """Latest state per camera plus its typed frame counts (Metrics.camera_counts); thread-safe."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._states: dict[str, StatusEvent] = {}
        self._last_lines_at = time.monotonic()
        self._last_counts: dict[str, tuple[int, int]] = {}

    def update(self, event: StatusEvent) -> None:
        """The camera's new state; also shown as pipeline_camera_up / pipeline_camera_state."""
        with self._lock:
            self._states[event.camera_id] = event
        self._metrics.camera_up.labels(event.camera_id).set(1 if event.state is CameraState.UP else 0)
        for state in CameraState:
            self._metrics.camera_state.labels(event.camera_id, state.value).set(1 if state is event.state else 0)

    def forget(self, camera_id: str) -> None:
        with self._lock:
            self._states.pop(camera_id, None)
            self._last_counts.pop(camera_id, None)

    def state(self, camera_id: str) -> CameraState | None:
        with self._lock:
            ev = self._states.get(camera_id)
        return ev.state if ev else None

    def snapshot(self) -> list[CameraSnapshot]:
        """Every camera's state and counters. One pass over the metrics for all cameras: the
        supervisor calls this every second, and a lookup per camera (each one a pass over every
        camera's samples) made it O(cameras^2), ~8 s at 300 cameras (issue 23)."""
        with self._lock:
            events = dict(self._states)
        counts = self._metrics.camera_counts()
        out = []
        for cam, ev in sorted(events.items()):
            c = counts.get(cam, CameraCounts())
            out.append(CameraSnapshot(cam, ev.state, ev.reason, c.decoded, c.published, c.dropped, c.decode_errors))
        return out

    def status_lines(self) -> list[str]:
        """One line per camera with rates since the previous call."""
        now = time.monotonic()
        dt = max(1e-6, now - self._last_lines_at)
        self._last_lines_at = now
        lines = []
        for snap in self.snapshot():
            prev_dec, prev_pub = self._last_counts.get(snap.camera_id, (0, 0))
            self._last_counts[snap.camera_id] = (snap.decoded, snap.published)
            lines.append(
                f"{snap.camera_id + ':':<12} {snap.state.value:<12} decode {(snap.decoded - prev_dec) / dt:5.1f} fps  "
                f"publish {(snap.published - prev_pub) / dt:5.1f} fps  published {snap.published}  "
                f"dropped {snap.dropped}  decode errors {snap.decode_errors}"
                + (f"  ({snap.reason})" if snap.reason and snap.state is not CameraState.UP else ""))
        return lines

    def summary_lines(self) -> list[str]:
        lines = []
        for snap in self.snapshot():
            lines.append(
                f"{snap.camera_id}: final state {snap.state.value}, decoded {snap.decoded}, "
                f"published {snap.published}, dropped {snap.dropped}, decode errors {snap.decode_errors}"
                + (f" ({snap.reason})" if snap.reason else ""))
        return lines
