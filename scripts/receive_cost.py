#!/usr/bin/env python3
"""What receiving a decode worker's frames costs the daemon: a real worker-side Outbox (workers/child.py)
in its own process sends FrameMessages of NVDEC pictures (DeviceRef: no pixels in the pipe) at one
worker's rate, evenly spread; the daemon side runs the real receiving thread of workers/pool.py (with a
handler that only counts, since mapping the pictures needs a GPU) and reports the daemon's CPU time a
frame and how many reads it made.

    python3 scripts/receive_cost.py [--rate 1000] [--seconds 3] [--rounds 3]

Three settings a round:
  before    one Connection.recv() a send (two reads), nested dataclasses pickled, sends not gathered
            (the code before issue 22 session 7, rebuilt here)
  reader    MessageReader (workers/wire.py: one read for what has arrived) and the flat FrameMessage pickle
  gathered  reader, and the worker's Outbox gathering for OUTBOX_GATHER_S before each send (what runs now)
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = ("before", "reader", "gathered")


def sample_message(n: int):
    """One 1080p NV12 NVDEC frame's message, as a worker sends it (no IPC handle: not its buffer's first)."""
    from pipeline.frame import Frame
    from pipeline.workers.messages import DeviceRef, FrameMessage

    ref = DeviceRef(1000 + n % 8, None, (n % 8) * 3_133_440, (1080, 1920, 3), (2048, "bt709", False))
    return FrameMessage(n % 34 + 1, Frame(f"cam-{n % 34:03d}", n // 34, n / 30.0, time.time(), 1920, 1080, ref), n)


@contextlib.contextmanager
def dataclass_pickling() -> Iterator[None]:
    """Frame messages pickled the dataclasses' own way (a class and a dict of fields each), as before."""
    from pipeline.workers.messages import DeviceRef, FrameMessage

    saved = FrameMessage.__reduce__, DeviceRef.__reduce__
    del FrameMessage.__reduce__, DeviceRef.__reduce__
    try:
        yield
    finally:
        FrameMessage.__reduce__, DeviceRef.__reduce__ = saved


def message_bytes() -> tuple[int, int]:
    """Pickled sizes of one frame's message, as Connection.send pickles it: the dataclasses' own way, flat."""
    from multiprocessing.reduction import ForkingPickler

    message = sample_message(1)
    flat = len(ForkingPickler.dumps(message))
    with dataclass_pickling():
        nested = len(ForkingPickler.dumps(message))
    return nested, flat


def worker_side(conn, rate: float, seconds: float, setting: str) -> None:
    """The worker: frames of 34 cameras round-robin into the real Outbox, at `rate` a second."""
    import pipeline.workers.child as child

    child.OUTBOX_GATHER_S = child.OUTBOX_GATHER_S if setting == "gathered" else 0.0
    with dataclass_pickling() if setting == "before" else contextlib.nullcontext():
        send_frames(child.Outbox(conn, lambda: [], 1.0), rate, seconds)
    conn.send(["end"])


def send_frames(outbox, rate: float, seconds: float) -> None:
    """`rate` frames a second for `seconds`, evenly spread, then the outbox closed (what is queued sent)."""
    period, start, n = 1.0 / rate, time.monotonic(), 0
    while (now := time.monotonic()) < start + seconds:
        due = start + n * period
        if due > now:
            time.sleep(due - now)
        outbox.put(sample_message(n))
        n += 1
    outbox.close(5.0)


def daemon_side(conn, setting: str) -> tuple[int, int, float]:
    """Receive until the worker's "end": (frames, reads, CPU seconds of this receiving thread)."""
    from pipeline.workers.messages import FrameMessage
    from pipeline.workers.wire import MessageReader

    frames = reads = 0
    cpu0 = time.thread_time()
    reader = MessageReader(conn) if setting != "before" else None
    while True:
        sends = reader.read() if reader is not None else [conn.recv()]
        reads += 1
        for messages in sends:
            for message in messages:
                if message == "end":
                    return frames, reads, time.thread_time() - cpu0
                if isinstance(message, FrameMessage):
                    frames += 1


def one_run(rate: float, seconds: float, setting: str) -> tuple[int, int, float]:
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe(duplex=True)
    child = ctx.Process(target=worker_side, args=(there, rate, seconds, setting), daemon=True)
    child.start()
    there.close()
    result: list[tuple[int, int, float]] = []
    receiver = threading.Thread(target=lambda: result.append(daemon_side(here, setting)))
    receiver.start()
    receiver.join(seconds + 30)
    child.join(5)
    return result[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000.0, help="frames a second (one worker's share: 34 cameras at 30)")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"# {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    nested, flat = message_bytes()
    print(f"one 1080p NV12 frame's message pickled: {nested} bytes as dataclasses, {flat} flat")
    for r in range(args.rounds):
        for setting in SETTINGS:
            frames, reads, cpu = one_run(args.rate, args.seconds, setting)
            print(f"round {r + 1}: {setting:8s}: {frames} frames in {reads} reads ({frames / max(reads, 1):.1f} a read), "
                  f"receiving thread CPU {1e6 * cpu / max(frames, 1):.1f} us a frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
