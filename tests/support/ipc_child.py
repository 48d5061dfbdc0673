"""Runs in a spawned process for tests/gpu/test_cuda_ipc_gpu.py: opens a decode worker's buffers the
way the daemon does (pipeline/workers/cuda_ipc.py) and reports what each picture holds."""
from __future__ import annotations

from multiprocessing.connection import Connection


def read_pictures(refs: list, conn: Connection) -> None:
    """Send back (min, max) of every picture's bytes, in order, or the error text."""
    try:
        from pipeline.workers.cuda_ipc import DeviceImporter

        importer = DeviceImporter(0)
        out = []
        for ref in refs:
            pixels = importer.image(ref, None).to_host()
            out.append((int(pixels.min()), int(pixels.max())))
        conn.send(out)
    except Exception as exc:  # noqa: BLE001 - the test shows it
        conn.send(f"{type(exc).__name__}: {exc}")
