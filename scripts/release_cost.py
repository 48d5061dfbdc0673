#!/usr/bin/env python3
"""What returning frames to a decode worker costs the daemon, as a daemon that fell behind returns them:
one token at a time, evenly spread (each new frame makes the scheduler drop a camera's oldest), while a
daemon that keeps up returns 32 after each batch. Drives the real `_WorkerLink._send_releases`
(workers/pool.py) over a real pipe to a process that counts what it receives.

    python3 scripts/release_cost.py [--rate 1000] [--seconds 3] [--coalesce-ms 0 2]

Prints, per setting of RELEASE_COALESCE_S: messages sent, tokens, and the CPU time per token of the
daemon process less the thread producing the tokens (so: the release thread, pickling, the pipe writes).
"""
from __future__ import annotations

import argparse
import multiprocessing
import queue
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def count_messages(conn) -> None:  # the worker's side: receive until None
    messages = tokens = 0
    while True:
        batch = conn.recv()
        if batch is None:
            conn.send((messages, tokens))
            return
        for message in batch:
            messages += 1
            tokens += len(message.tokens)


def one_run(rate: float, seconds: float, coalesce_s: float) -> tuple[int, int, float]:
    import pipeline.workers.pool as pool

    pool.RELEASE_COALESCE_S = coalesce_s
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe(duplex=True)
    child = ctx.Process(target=count_messages, args=(there,), daemon=True)
    child.start()
    link = object.__new__(pool._WorkerLink)  # only what _send_releases uses: no worker process
    link._conn, link._send_lock, link._releases, link.alive = here, threading.Lock(), queue.SimpleQueue(), True
    releaser = threading.Thread(target=link._send_releases, daemon=True)
    releaser.start()
    period = 1.0 / rate
    cpu0, own0, start = time.process_time(), time.thread_time(), time.monotonic()
    n = 0
    while (now := time.monotonic()) < start + seconds:
        due = start + n * period
        if due > now:
            time.sleep(due - now)
        link.release(n)
        n += 1
    link._releases.put(None)
    releaser.join(5)
    own = time.thread_time() - own0  # this thread, the token producer: not what is measured
    cpu = time.process_time() - cpu0 - own
    here.send(None)
    messages, tokens = here.recv()
    child.join(5)
    return messages, tokens, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000.0, help="tokens a second (one worker's share of the drops)")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--coalesce-ms", type=float, nargs="+", default=[0.0, 2.0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for r in range(args.rounds):
        for ms in args.coalesce_ms:
            messages, tokens, cpu = one_run(args.rate, args.seconds, ms / 1000.0)
            print(f"round {r + 1}: coalesce {ms:g} ms: {tokens} tokens in {messages} messages "
                  f"({tokens / max(messages, 1):.1f} a message), daemon CPU {1e6 * cpu / max(tokens, 1):.1f} us a token")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
