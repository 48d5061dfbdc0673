#!/usr/bin/env python3
"""A py-spy raw profile of `pipeline bench` split by process (daemon / decode worker) and thread kind.

    py-spy record --gil --subprocesses --rate 200 --format raw -o gil.txt -- pipeline bench CONFIG ...
    python3 scripts/gpu_lab/profile_by_thread.py gil.txt [TOP]

(`gpu_profile.sh`'s gil_rt step records such a profile.) With --subprocesses every stack starts with
its process chain; a stack under two "process" frames is a decode worker's. Each thread kind is
recognised by the stage function it runs in (StageThread work, the workers' receive and release
threads, camera threads, the bench's own polling), and printed with its leaf frames.
"""
from __future__ import annotations

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_summary import short  # noqa: E402

KINDS = [  # (kind, every marker must be in the stack); the first match wins
    ("startup/imports", ("importlib", "Daemon.start")),
    ("camera", ("_run_camera",)),
    ("outbox", ("child.py", "Outbox._run")),
    ("serve", ("serve (pipeline/workers/child.py",)),
    ("receive", ("_receive (pipeline/workers/pool.py",)),
    ("release", ("_send_releases",)),
    ("batch", ("StageThread._run", "preprocess")),
    ("batch", ("StageThread._run", "SchedulerInbox")),
    ("infer", ("StageThread._run", "/infer/")),
    ("postprocess", ("StageThread._run", "postprocess")),
    ("publish", ("StageThread._run", "publish")),
    ("publish", ("StageThread._run", "PublishInbox")),
    ("stage-glue", ("StageThread._run",)),
    ("supervisor", ("Supervisor",)),
    ("bench-probe", ("probe.py",)),
    ("bench-main", ("run_daemon",)),
]


def kind_of(stack: str) -> str:
    for kind, markers in KINDS:
        if all(m in stack for m in markers):
            return kind
    return "other"


def main(argv: list[str]) -> int:
    path, top = argv[0], int(argv[1]) if len(argv) > 1 else 12
    data: dict[str, dict[str, collections.Counter[str]]] = collections.defaultdict(
        lambda: collections.defaultdict(collections.Counter))
    totals: collections.Counter[str] = collections.Counter()
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        proc = "worker" if sum(f.startswith("process ") for f in frames) > 1 else "daemon"
        code = [f for f in frames if not f.startswith(("process ", "thread ("))]
        n, kind = int(count), kind_of(";".join(code))
        totals[proc] += n
        data[proc][kind]["__all__"] += n
        if code:
            data[proc][kind][short(code[-1])] += n
    for proc, kinds in data.items():
        print(f"== {proc}: {totals[proc]} samples")
        for kind, leaves in sorted(kinds.items(), key=lambda kv: -kv[1]["__all__"]):
            print(f"  -- {kind}: {leaves['__all__']} ({100 * leaves['__all__'] / totals[proc]:.1f}%)")
            for leaf, k in leaves.most_common(top + 1):
                if leaf != "__all__":
                    print(f"       {100 * k / totals[proc]:5.1f}%  {leaf}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
