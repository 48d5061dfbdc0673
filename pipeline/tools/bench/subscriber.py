"""The benchmark's ZeroMQ subscriber, run as its own process so that its JSON parsing does not share
the daemon's GIL (a real consumer is another process too).

    python -m pipeline.tools.bench.subscriber URL OUT.npz

Prints "ready" once connected, records every detections message (monotonic receive time, camera,
seq, published_at - captured_at) until a line "stop" (or EOF) arrives on stdin, drains what is still
in flight, and writes the arrays to OUT.npz. CLOCK_MONOTONIC is system-wide on Linux, so the parent
can compare receive times with its own measurement window.
"""
from __future__ import annotations

import sys
import threading
from array import array

import numpy as np

DRAIN_IDLE_S = 0.3  # after "stop": keep receiving until the socket has been quiet this long


def main(argv: list[str]) -> int:
    import time

    from pipeline.publish.messages import MessageError
    from pipeline.publish.subscriber import Subscriber

    if len(argv) != 2:
        print("usage: python -m pipeline.tools.bench.subscriber URL OUT.npz", file=sys.stderr)
        return 2
    url, out = argv
    stop = threading.Event()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    recv_t, latency, seq, camera, boxes = array("d"), array("d"), array("q"), array("q"), array("q")
    cameras: dict[str, int] = {}
    with Subscriber(url, kinds=("det",), rcvhwm=1_000_000) as sub:
        print("ready", flush=True)
        threading.Thread(target=watch_stdin, daemon=True).start()
        while True:
            timeout = DRAIN_IDLE_S if stop.is_set() else 0.05
            try:
                got = sub.recv(timeout=timeout)
            except MessageError:
                continue
            if got is None:
                if stop.is_set():
                    break
                continue
            now = time.monotonic()
            msg = got[1]
            recv_t.append(now)
            latency.append(msg["published_at"] - msg["captured_at"])
            seq.append(msg["seq"])
            camera.append(cameras.setdefault(msg["camera"], len(cameras)))
            boxes.append(len(msg["detections"]))
    np.savez(out, recv_t=np.frombuffer(recv_t, np.float64), latency=np.frombuffer(latency, np.float64),
             seq=np.frombuffer(seq, np.int64), camera=np.frombuffer(camera, np.int64),
             detections=np.frombuffer(boxes, np.int64),
             names=np.array(list(cameras), dtype=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
