#!/usr/bin/env python3
"""A/B of `pipeline bench` between two commits, interleaved in one run (these machines are shared and
noisy: compare only within a run). Each commit is checked out into a temporary git worktree and run
from there with this interpreter (its packages), rounds alternating A, B, A, B, ...

    python3 scripts/bench_ab.py OLD_REV NEW_REV [--rounds 3] [-- bench args...]
    default bench args: configs/bench-cpu.yaml --streams 3 --seconds 6 --warmup 2 --stages decode,inference,e2e-fast

Prints one line per run (frames/s of each stage, end to end CPU ms per frame) and the medians.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = ["configs/bench-cpu.yaml", "--streams", "3", "--seconds", "6", "--warmup", "2",
           "--stages", "decode,inference,e2e-fast"]


def run_bench(tree: Path, bench_args: list[str], out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "pipeline", "bench", *bench_args, "--json", str(out)], cwd=tree,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    return json.loads(out.read_text())


def figures(report: dict) -> dict[str, float]:
    stages = {name: stage for name, stage in report["stages"].items() if stage}  # stages not run are null
    out = {name: stage["fps"] for name, stage in stages.items() if stage.get("fps")}
    e2e = stages.get("e2e_fast", {})
    if e2e.get("fps") and e2e.get("resources", {}).get("cpu_percent"):
        out["e2e_cpu_ms_per_frame"] = 10 * e2e["resources"]["cpu_percent"] / e2e["fps"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    args, rest = parser.parse_known_args()
    bench_args = [a for a in rest if a != "--"] or DEFAULT
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for label, rev in (("A", args.old), ("B", args.new)):
            tree = Path(tmp) / label
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), rev], check=True)
            trees[label] = tree
        results: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
        try:
            for r in range(args.rounds):
                for label in ("A", "B"):
                    fig = figures(run_bench(trees[label], bench_args, Path(tmp) / f"{label}{r}.json"))
                    results[label].append(fig)
                    print(f"round {r + 1} {label} ({args.old if label == 'A' else args.new}): "
                          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(fig.items())), flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    for label in ("A", "B"):
        keys = sorted({k for fig in results[label] for k in fig})
        print(f"median {label}: " + ", ".join(
            f"{k} {statistics.median(f[k] for f in results[label] if k in f):.1f}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
