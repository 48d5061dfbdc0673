#!/usr/bin/env python3
"""Summarise a py-spy raw profile (`record -f raw --threads [--gil]`): each thread's share of the
samples, and the functions that took the most, by their own time and including what they called.

    python3 scripts/gpu_lab/pyspy_summary.py PROFILE.txt [--top 25]
"""
from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    if not Path(args.profile).exists():
        print(f"{args.profile}: no profile (py-spy did not run: see the probe's log)")
        return 1
    with open(args.profile) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            head = frames[0]
            if head.startswith("thread ("):  # "thread (TID): NAME"; a camera's threads counted together
                threads[re.sub(r"^camera-.*", "camera-*", head.partition(": ")[2] or "?")] += n
                frames = frames[1:]
            else:
                threads["?"] += n
            calls = frames
            if calls:
                own[calls[-1]] += n
            for fr in set(calls):
                if "(threading.py:" not in fr:  # every thread's bootstrap: no information
                    inclusive[fr] += n
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples")
    print("by thread:")
    for name, n in threads.most_common(args.top):
        print(f"  {n / total:6.1%}  {name}")
    print("by function, own time:")
    for name, n in own.most_common(args.top):
        print(f"  {n / total:6.1%}  {name[:140]}")
    print("by function, with what it called:")
    for name, n in inclusive.most_common(args.top):
        print(f"  {n / total:6.1%}  {name[:140]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
