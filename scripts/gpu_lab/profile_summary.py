#!/usr/bin/env python3
"""Summarise a py-spy raw (collapsed-stack) profile of the daemon by stage thread.

    py-spy record --gil --rate 200 --format raw -o gil.txt -- pipeline bench CONFIG --stages e2e-fast
    python3 scripts/gpu_lab/profile_summary.py gil.txt [--top 12]

With --gil, py-spy samples only the thread holding the GIL, so the shares below are where the
interpreter's one lock goes: a stage near 100 % of the wall clock is GIL-bound. Stacks are grouped
by the stage loop they run in (camera source, batch/preprocess, infer, publish, other), then by
their leaf frame and by every frame they pass through (inclusive).
"""
from __future__ import annotations

import argparse
import collections
import re
import sys

# the first matching marker (in this list's order) anywhere in a stack names its thread's stage
STAGES = [
    ("worker: camera", re.compile(r"_run_camera \(pipeline/workers/child\.py")),
    ("worker: outbox", re.compile(r"_run \(pipeline/workers/child\.py")),
    ("worker: serve", re.compile(r"serve \(pipeline/workers/child\.py")),
    ("daemon: receive from workers", re.compile(r"_receive \(pipeline/workers/pool\.py")),
    ("daemon: release to workers", re.compile(r"_send_releases \(pipeline/workers/pool\.py")),
    ("camera thread", re.compile(r"\brun \(pipeline/sources/")),
    ("batch+preprocess", re.compile(r"\(pipeline/preprocess/|SchedulerInbox\.take|next_batch \(pipeline/scheduler")),
    ("infer", re.compile(r"\(pipeline/infer/")),
    ("postprocess", re.compile(r"\(pipeline/postprocess/")),
    ("analytics", re.compile(r"\(pipeline/analytics/")),
    ("publish", re.compile(r"\(pipeline/publish/|PublishInbox\.take|publish \(pipeline/app/daemon")),
    ("stage threads (glue)", re.compile(r"_run \(pipeline/app/stages\.py")),
    ("supervisor", re.compile(r"\(pipeline/app/supervisor\.py")),
]
FRAME = re.compile(r"^(?P<func>.*) \((?P<loc>[^()]*)\)$")


def stage_of(frames: list[str]) -> str:
    joined = ";".join(frames)
    for name, marker in STAGES:
        if marker.search(joined):
            return name
    return "other"


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    loc = m["loc"]
    for prefix in ("site-packages/", "dist-packages/", "gpu-site/"):
        if prefix in loc:
            loc = loc.split(prefix, 1)[1]
    return f"{m['func']} ({loc})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw", help="py-spy --format raw output")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--rate", type=float, default=0.0, help="py-spy --rate, to print seconds too")
    args = ap.parse_args(argv)

    by_stage: collections.Counter[str] = collections.Counter()
    leaf: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total = 0
    with open(args.raw) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [fr for fr in stack.split(";") if fr]
            # py-spy --threads/--idle prefix the thread as the first "frame"; it is not code
            if frames and frames[0].startswith(("thread (", "process ")):
                frames = frames[1:]
            stage = stage_of(frames)
            total += n
            by_stage[stage] += n
            if frames:
                leaf[stage][short(frames[-1])] += n
                for fr in dict.fromkeys(short(x) for x in frames):
                    inclusive[stage][fr] += n
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    secs = f" ({total / args.rate:.1f} s)" if args.rate else ""
    print(f"{total} samples{secs}")
    for stage, n in by_stage.most_common():
        print(f"\n== {stage}: {n} samples, {100 * n / total:.1f} %")
        print("   leaf frames:")
        for fr, k in leaf[stage].most_common(args.top):
            print(f"   {100 * k / total:6.2f} %  {fr}")
        print("   inclusive (pipeline code):")
        shown = 0
        for fr, k in inclusive[stage].most_common():
            if "pipeline/" in fr or "scheduler" in fr:
                print(f"   {100 * k / total:6.2f} %  {fr}")
                shown += 1
                if shown >= args.top:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())
