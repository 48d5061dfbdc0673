"""CUDA driver calls that keep the interpreter lock, for the microsecond-long calls on the inference
thread's critical path.

cuda-python (and plain ctypes) let go of the interpreter lock around every call. Taking it back
means waiting for whichever thread holds it to reach the end of its switch interval: with 135
cameras the inference thread waited 3.8 ms on average for the call that only queues the copy of a
batch into the CUDA graph's input buffer, longer than the copy by a factor of a thousand, and the
GPU sat idle meanwhile (scripts/gpu_lab/e2e_timeline.py on the H200, docs/BENCHMARKS.md, issue 22).
A call through ctypes.PyDLL keeps the lock: right for a call that only queues work and returns.

Driver API (libcuda, always there with the driver): it acts on the calling thread's current context,
which the runtime calls before it (ONNX Runtime's, cudaSetDevice) have made the device's primary one.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any

from pipeline.gpu.runtime import CudaError

CUDA_ERROR_INVALID_CONTEXT = 201


class LockHeldDriver:
    """libcuda.so.1 opened with ctypes.PyDLL; one per process (`shared()`). Each copy returns True when
    done (or queued), False when the caller must copy the usual way (no context current on this
    thread yet: the runtime call that follows makes it current), and raises CudaError otherwise."""

    _lock = threading.Lock()
    _shared: "LockHeldDriver | None" = None
    _missing = False  # libcuda could not be loaded: not tried again on every call

    @classmethod
    def shared(cls) -> "LockHeldDriver | None":
        """The process's driver; None where libcuda cannot be loaded (no NVIDIA driver here)."""
        with cls._lock:
            if cls._shared is None and not cls._missing:
                try:
                    cls._shared = cls()
                except CudaError:
                    cls._missing = True
            return cls._shared

    def __init__(self) -> None:
        try:
            lib: Any = ctypes.PyDLL("libcuda.so.1")
        except OSError as exc:
            raise CudaError(f"libcuda.so.1 cannot be loaded: {exc}") from None
        self._copy_dtod = lib.cuMemcpyDtoDAsync_v2
        self._copy_dtod.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p]
        self._copy_dtod.restype = ctypes.c_int
        self._copy_dtoh = lib.cuMemcpyDtoH_v2
        self._copy_dtoh.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t]
        self._copy_dtoh.restype = ctypes.c_int
        self._copy_dtoh_async = lib.cuMemcpyDtoHAsync_v2
        self._copy_dtoh_async.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p]
        self._copy_dtoh_async.restype = ctypes.c_int
        self._graph_launch = lib.cuGraphLaunch
        self._graph_launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._graph_launch.restype = ctypes.c_int
        self._event_record = lib.cuEventRecord
        self._event_record.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._event_record.restype = ctypes.c_int

    def copy_device_to_device_async(self, dst_ptr: int, src_ptr: int, nbytes: int, stream: int) -> bool:
        """Queue the copy on `stream`."""
        return _done(self._copy_dtod(dst_ptr, src_ptr, nbytes, stream), "cuMemcpyDtoDAsync device to device")

    def copy_device_to_host(self, host_ptr: int, src_ptr: int, nbytes: int) -> bool:
        """Copy now (synchronous; a few hundred KB of candidates take ~0.1 ms)."""
        return _done(self._copy_dtoh(host_ptr, src_ptr, nbytes), "cuMemcpyDtoH device to host")

    def copy_device_to_host_async(self, host_ptr: int, src_ptr: int, nbytes: int, stream: int) -> bool:
        """Queue the copy on `stream` (into page-locked memory, or the driver copies synchronously)."""
        return _done(self._copy_dtoh_async(host_ptr, src_ptr, nbytes, stream), "cuMemcpyDtoHAsync device to host")

    def launch_graph(self, graph_exec: int, stream: int) -> bool:
        """Queue a captured CUDA graph on `stream`."""
        return _done(self._graph_launch(graph_exec, stream), "cuGraphLaunch")

    def record_event(self, event: int, stream: int) -> bool:
        return _done(self._event_record(event, stream), "cuEventRecord")


def _done(result: int, call: str) -> bool:
    if result == 0:
        return True
    if result == CUDA_ERROR_INVALID_CONTEXT:
        return False
    raise CudaError(f"{call} failed: CUresult {result}")
