"""Decode worker processes (`decode: {workers: N}`): cameras decoded outside the daemon's GIL."""
from pipeline.workers.pool import DecodeWorkerPool, WorkerCamera

__all__ = ["DecodeWorkerPool", "WorkerCamera"]
