"""End to end with analytics on versus off: `pipeline bench --stages e2e-fast` alternately on the demo
config as it is (tracking, one zone and one line per camera) and on a copy without analytics.

    python3 scripts/analytics_overhead.py [--config configs/demo.yaml] [--rounds 3] [--seconds 8] [--streams N]
    python3 scripts/analytics_overhead.py --cpu [--rounds 3]

Prints each run's frames/s and the ratio of the medians (on / off). Alternating rounds spread slow
phases of a shared machine over both arms. --cpu instead runs the daemon (`pipeline run`) over the
config's files once, as fast as it can (realtime: false), and compares the CPU seconds it used per
frame: on a shared machine that is steadier than frames/s, and it is what analytics adds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def bench(config: Path, out: Path, seconds: float, streams: int | None) -> float:
    cmd = [sys.executable, "-m", "pipeline", "bench", str(config), "--stages", "e2e-fast", "--seconds", str(seconds),
           "--json", str(out)] + (["--streams", str(streams)] if streams else [])
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["stages"]["e2e_fast"]["fps"]


def cpu_per_frame(config: Path, frames: int) -> float:
    """CPU seconds (user + system) of one `pipeline run` over the files, per frame."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "pipeline", "run", str(config)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--streams", type=int, default=None)
    parser.add_argument("--cpu", action="store_true", help="CPU seconds per frame of one run over the files")
    parser.add_argument("--frames", type=int, default=650, help="--cpu: frames in the config's files (demo: 650)")
    parser.add_argument("--copies", type=int, default=1,
                        help="--cpu: run each camera this many times at once (more frames: start-up weighs less)")
    args = parser.parse_args()
    on_path = args.config.resolve()
    doc = yaml.safe_load(on_path.read_text())
    if not doc.get("analytics", {}).get("tracking"):
        raise SystemExit(f"{on_path}: analytics.tracking is off; nothing to compare")
    doc["analytics"] = {"tracking": False}
    for cam in doc["cameras"]:
        cam.pop("analytics", None)
    runs: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(dir=on_path.parent) as tmp:  # beside the config: its relative paths hold
        off_path = Path(tmp) / "off.yaml"
        off_path.write_text(yaml.safe_dump(doc).replace("../", "../../"))
        if args.cpu:
            on_doc = yaml.safe_load(on_path.read_text())
            for d in (doc, on_doc):
                d["cameras"] = [{**c, "id": f"{c['id']}{i}", "realtime": False}
                                for i in range(args.copies) for c in d["cameras"]]
                d["metrics"] = {"bind": None}
            on_path = Path(tmp) / "on.yaml"
            on_path.write_text(yaml.safe_dump(on_doc).replace("../", "../../"))
            off_path.write_text(yaml.safe_dump(doc).replace("../", "../../"))
            for r in range(args.rounds):
                for arm, path in (("off", off_path), ("on", on_path)) if r % 2 == 0 else (("on", on_path), ("off", off_path)):
                    ms = 1000 * cpu_per_frame(path, args.frames * args.copies)
                    runs[arm].append(ms)
                    print(f"round {r} analytics {arm:<3}: {ms:6.2f} CPU ms per frame", flush=True)
            on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
            print(f"median on {on:.2f}, off {off:.2f} CPU ms per frame: on/off = {on / off:.3f}")
            return
        for r in range(args.rounds):
            for arm, path in (("off", off_path), ("on", on_path)) if r % 2 == 0 else (("on", on_path), ("off", off_path)):
                fps = bench(path, Path(tmp) / f"{arm}{r}.json", args.seconds, args.streams)
                runs[arm].append(fps)
                print(f"round {r} analytics {arm:<3}: {fps:8.1f} frames/s", flush=True)
    on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
    print(f"median on {on:.1f}, off {off:.1f}: on/off = {on / off:.3f}")


if __name__ == "__main__":
    main()
