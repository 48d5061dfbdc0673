"""Leaving the process while a camera reader is inside FFmpeg (pipeline/sources/readers.py).

Without it, CI saw the daemon die of SIGSEGV (-11) after a clean summary: a reader blocked on a
frozen RTSP server reached its timeout while the interpreter finalized."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

from pipeline.sources.readers import FfmpegReader, exit_now_if_readers_blocked, readers_alive
from tests.support.reliability import SilentServer


def test_readers_alive_names_only_the_readers_still_running() -> None:
    release = threading.Event()
    blocked = FfmpegReader("frozen", release.wait, ())
    finished = FfmpegReader("yard", lambda: None, ())
    other = threading.Thread(target=release.wait, daemon=True)  # not a reader: never waited for
    for t in (blocked, finished, other):
        t.start()
    try:
        started = time.monotonic()
        assert readers_alive(wait_s=0.2) == ["frozen"]
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
    blocked.join(2)
    assert "frozen" not in readers_alive()


def test_no_reader_left_means_the_normal_exit() -> None:
    left: list[int] = []
    exit_now_if_readers_blocked(3, wait_s=0.0, leave=left.append)
    assert left == []


def test_a_reader_that_leaves_in_time_is_waited_for() -> None:
    reader = FfmpegReader("lobby", time.sleep, (0.1,))
    reader.start()
    left: list[int] = []
    exit_now_if_readers_blocked(3, wait_s=2.0, leave=left.append)
    assert left == [] and not reader.is_alive()


def test_a_reader_blocked_in_ffmpeg_makes_the_process_leave_with_its_code() -> None:
    """A real PyAV open blocked on a server that never answers: the process leaves at once with the
    code it was given, and what it printed before is not lost."""
    script = textwrap.dedent("""
        import sys, av
        from pipeline.sources.readers import FfmpegReader, exit_now_if_readers_blocked

        def read():
            try:
                av.open(sys.argv[1], options={"rtsp_transport": "tcp"}, timeout=20.0)
            except Exception:
                pass

        FfmpegReader("silent", read, ()).start()
        print("summary written", flush=False)  # buffered: the exit must flush it
        exit_now_if_readers_blocked(7, wait_s=0.5)
        print("finalized normally")
    """)
    with SilentServer() as silent:
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-c", script, silent.url()], capture_output=True, text=True, timeout=15)
    assert run.returncode == 7, run.stderr
    assert run.stdout.splitlines() == ["summary written"]
    assert time.monotonic() - started < 10.0  # not the reader's 20 s timeout
