"""How often a process dies of SIGSEGV when it exits while camera readers are inside FFmpeg, with
and without pipeline/sources/readers.py's exit (CI stop 31: the daemon exited -11 after its summary).

Each child opens 16 RTSP readers on a server that accepts and never answers (PyAV timeout 0.5 s),
then lets the main thread end at 0.46..0.51 s, so the timeouts fire while the interpreter finalizes.

    python scripts/exit_crash_repro.py [--runs-per-delay 25]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DELAYS_S = (0.46, 0.47, 0.48, 0.49, 0.50, 0.51)
READERS = 16
READ_TIMEOUT_S = 0.5


def child(delay_s: float, fixed: bool) -> None:
    import av

    from pipeline.sources.readers import FfmpegReader, exit_now_if_readers_blocked

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(server.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
    url = f"rtsp://127.0.0.1:{server.getsockname()[1]}/stream"

    def read() -> None:
        try:
            av.open(url, options={"rtsp_transport": "tcp"}, timeout=READ_TIMEOUT_S)
        except av.error.FFmpegError:
            pass

    for i in range(READERS):
        FfmpegReader(str(i), read, ()).start()
    time.sleep(delay_s)
    if fixed:
        exit_now_if_readers_blocked(0, wait_s=0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-per-delay", type=int, default=25)
    parser.add_argument("--child", nargs=2, metavar=("DELAY_S", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(float(args.child[0]), args.child[1] == "fixed")
        return 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for mode in ("plain", "fixed"):
        codes: dict[int, int] = {}
        for delay in DELAYS_S:
            for _ in range(args.runs_per_delay):
                rc = subprocess.run([sys.executable, __file__, "--child", str(delay), mode], env=env,
                                    capture_output=True).returncode
                codes[rc] = codes.get(rc, 0) + 1
        total = sum(codes.values())
        print(f"{mode}: {total - codes.get(0, 0)} of {total} exits failed; exit codes {dict(sorted(codes.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
