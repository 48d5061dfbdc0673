"""`pipeline demo`: the daemon as a subprocess plus a subscriber that prints what it receives,
the daemon's per-camera status lines, and a summary at the end."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import load_config
from pipeline.publish.subscriber import Subscriber, connect_url

PRINT_EVERY_S = 1.0  # detection lines per camera: at most one a second, so the terminal stays readable


@dataclass
class CameraTally:
    messages: int = 0
    seq_gaps: int = 0
    frames_skipped: int = 0
    last_seq: int = -1
    last_frame: int = -1
    labels: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    last_print: float = 0.0
    tracks: set[int] = field(default_factory=set)  # track ids seen (analytics.tracking)
    counts: dict = field(default_factory=dict)  # zone/line counts from the last events message

    def add(self, msg: dict) -> None:
        if self.last_seq >= 0 and msg["seq"] != self.last_seq + 1:
            self.seq_gaps += 1
        if self.last_frame >= 0 and msg["frame"] > self.last_frame + 1:
            self.frames_skipped += msg["frame"] - self.last_frame - 1
        self.last_seq, self.last_frame = msg["seq"], msg["frame"]
        self.messages += 1
        self.labels.update(d["label"] for d in msg["detections"])
        self.tracks.update(d["track_id"] for d in msg["detections"] if d.get("track_id") is not None)
        self.latencies.append(msg["published_at"] - msg["captured_at"])


def _describe(msg: dict) -> str:
    counts = Counter(d["label"] for d in msg["detections"])
    what = ", ".join(f"{n} {label}" for label, n in sorted(counts.items())) or "nothing"
    return (f"det    {msg['camera']:<10} frame {msg['frame']:>5} seq {msg['seq']:>5}: {what}  "
            f"(latency {1000 * (msg['published_at'] - msg['captured_at']):.0f} ms)")


def _describe_event(ev: dict, camera: str, frame: int) -> str:
    where = f"zone {ev['zone']}" if ev["zone"] else f"line {ev['line']} ({ev['direction']})"
    dwell = f", dwell {ev['dwell_s']:.1f} s" if ev["dwell_s"] is not None else ""
    return f"event  {camera:<10} frame {frame:>5}: {ev['type']} {where}: {ev['label']} #{ev['track_id']}{dwell}"


def _describe_counts(counts: dict) -> str:
    """{rule: {label: {what: n}}} -> 'entrance: person enter 3 exit 2; kerb: car forward 4'."""
    parts = []
    for rule, per_label in sorted(counts.items()):
        inner = ", ".join(f"{label} " + " ".join(f"{what} {n}" for what, n in sorted(per_what.items()))
                          for label, per_what in sorted(per_label.items()))
        parts.append(f"{rule}: {inner}")
    return "; ".join(parts)


def run_demo(config_path: str, seconds: float = 60.0) -> int:
    cfg = load_config(config_path)
    cmd = [sys.executable, "-m", "pipeline", "run", config_path, "--wait-for-subscribers", "1",
           "--status-interval", "5"]
    tallies: dict[str, CameraTally] = defaultdict(CameraTally)
    print(f"demo: starting the daemon on {len(cfg.cameras)} camera(s); detections print at most once a "
          f"second per camera, status lines every 5 s (stops by itself within {seconds:.0f} s)", flush=True)
    with Subscriber(connect_url(cfg.publish.bind)) as sub:
        proc = subprocess.Popen(cmd, env=os.environ.copy())
        deadline = time.monotonic() + seconds
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.send_signal(signal.SIGTERM)
                    deadline = float("inf")
                got = sub.recv(timeout=0.2)
                if got is None:
                    continue
                topic, msg = got
                if topic.startswith("status/"):
                    print(f"status {msg['camera']:<10} {msg['state']}"
                          + (f" ({msg['reason']})" if msg.get("reason") else ""), flush=True)
                    continue
                if topic.startswith("evt/"):
                    tallies[msg["camera"]].counts = msg["counts"]
                    for ev in msg["events"]:
                        print(_describe_event(ev, msg["camera"], msg["frame"]), flush=True)
                    continue
                tally = tallies[msg["camera"]]
                tally.add(msg)
                now = time.monotonic()
                if now - tally.last_print >= PRINT_EVERY_S:
                    tally.last_print = now
                    print(_describe(msg), flush=True)
            while (got := sub.recv(timeout=0.3)) is not None:
                if got[0].startswith("det/"):
                    tallies[got[1]["camera"]].add(got[1])
                elif got[0].startswith("evt/"):
                    tallies[got[1]["camera"]].counts = got[1]["counts"]
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    print("\ndemo summary (from the subscriber's side):")
    for cam, t in sorted(tallies.items()):
        lat = np.array(t.latencies) * 1000 if t.latencies else np.zeros(1)
        labels = ", ".join(f"{label} {n}" for label, n in t.labels.most_common()) or "none"
        print(f"  {cam}: {t.messages} messages, seq gaps {t.seq_gaps}, frames skipped {t.frames_skipped}, "
              f"latency p50 {np.percentile(lat, 50):.0f} ms p95 {np.percentile(lat, 95):.0f} ms; "
              f"detections: {labels}")
        if t.tracks:
            print(f"  {cam}: {len(t.tracks)} tracks; counts: {_describe_counts(t.counts) or 'no zone or line events yet'}")
    print(f"daemon exit code {code}")
    return code
