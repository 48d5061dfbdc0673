"""GPU utilisation per `pipeline bench` stage: lines up an `nvidia-smi dmon -s u -o T` log with the
bench's progress lines (`bench HH:MM:SS: STAGE: ...` when a stage starts, `bench HH:MM:SS:   STAGE:
N frames/s` when it ends) and prints each stage's median SM % and NVDEC % over its steady seconds:
those whose SM % + NVDEC % is at least half the stage's busiest second. That leaves out the idle
seconds of a stage's start-up (sessions, CUDA graphs, worker processes) and shutdown, which a
stage's span includes. scripts/gpu_lab/gpu_bench.sh writes both logs.

    python3 scripts/gpu_lab/dmon_stages.py out-gpu/bench/h264_16.log out-gpu/bench/dmon_bench16.log

dmon's SM % is the share of each second in which any kernel ran, not how full the SMs were.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

STEADY = 0.5  # a second counts when its SM % + NVDEC % reaches this share of the stage's busiest second
PROGRESS = re.compile(r"^bench (\d\d):(\d\d):(\d\d): (\s*)([a-z_0-9]+): (.*)$")


def seconds(h: str, m: str, s: str) -> int:
    return int(h) * 3600 + int(m) * 60 + int(s)


def stage_windows(bench_log: str) -> list[tuple[str, int, int, str]]:
    """(stage, start s, end s, result) for every stage that started and ended in the log."""
    started: dict[str, int] = {}
    out = []
    for line in bench_log.splitlines():
        match = PROGRESS.match(line)
        if not match:
            continue
        h, m, s, indent, stage, rest = match.groups()
        at = seconds(h, m, s)
        if not indent:
            started[stage] = at
        elif stage in started:
            out.append((stage, started.pop(stage), at, rest))
    return out


def dmon_samples(dmon_log: str) -> list[tuple[int, int, int]]:
    """(time s, SM %, NVDEC %) per sample line."""
    out = []
    for line in dmon_log.splitlines():
        fields = line.split()
        if len(fields) >= 6 and not line.startswith("#") and fields[0].count(":") == 2:
            try:
                out.append((seconds(*fields[0].split(":")), int(fields[2]), int(fields[5])))
            except ValueError:  # "-" where a counter is not supported
                continue
    return out


def summary(bench_log: str, dmon_log: str) -> list[str]:
    samples = dmon_samples(dmon_log)
    lines = []
    for stage, start, end, result in stage_windows(bench_log):
        inside = [(sm, dec) for t, sm, dec in samples if start <= t <= end]
        busiest = max((sm + dec for sm, dec in inside), default=0)
        steady = [(sm, dec) for sm, dec in inside if busiest and sm + dec >= STEADY * busiest]
        if not steady:
            lines.append(f"{stage:<14} no busy dmon samples between {start} and {end}")
            continue
        sm = statistics.median(s for s, _ in steady)
        dec = statistics.median(d for _, d in steady)
        lines.append(f"{stage:<14} SM {sm:>4.0f} %  NVDEC {dec:>4.0f} %  ({len(steady)} of {len(inside)} s)  {result}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_log", type=Path)
    parser.add_argument("dmon_log", type=Path)
    args = parser.parse_args(argv)
    for line in summary(args.bench_log.read_text(errors="replace"), args.dmon_log.read_text(errors="replace")):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
