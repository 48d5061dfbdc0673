"""The one device-buffer type (and its pinned host counterpart), in the shape of the TensorRT
samples' common_runtime.py: allocated once, reused, released by an explicit free() / close().

Takes the runtime module as an argument (gpu/runtime.py: load_cuda_runtime()), so the TensorRT
mock (tests/support/mock_tensorrt.py) can stand in for it. Pooled camera pictures are another
thing (gpu/memory.py: DeviceBufferPool, DeviceImage): they go back to a pool, not to cudaFree.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from pipeline.gpu.lock_held import LockHeldDriver
from pipeline.gpu.runtime import CudaError, check


class DeviceBuffer:
    """cudaMalloc'd bytes; `upload` is a synchronous host-to-device copy (the calibrator's use)."""

    def __init__(self, runtime: Any, nbytes: int) -> None:
        self._rt = runtime
        self.nbytes = int(nbytes)
        self.ptr = int(check(runtime.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})", runtime))

    def upload(self, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        if array.nbytes > self.nbytes:
            raise ValueError(f"{array.nbytes} bytes do not fit a device buffer of {self.nbytes}")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(self._rt.cudaMemcpy(self.ptr, array.ctypes.data, array.nbytes, kind), "cudaMemcpy to device", self._rt)
        return self.ptr

    def free(self) -> None:
        """Release the memory. Safe to call twice."""
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(self._rt.cudaFree(ptr), "cudaFree", self._rt)

    close = free

    def __enter__(self) -> "DeviceBuffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()


class PinnedHostArray:
    """A numpy array in page-locked host memory: the only kind cudaMemcpyAsync copies asynchronously."""

    def __init__(self, runtime: Any, shape: tuple[int, ...], dtype: Any) -> None:
        self._rt = runtime
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self.ptr = int(check(runtime.cudaMallocHost(self.nbytes), f"cudaMallocHost({self.nbytes})", runtime))
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=self.dtype).reshape(shape)

    def copy_from_device_async(self, src_ptr: int, nbytes: int, stream: int) -> None:
        """Queue a copy of `nbytes` at `src_ptr` into the array on `stream` (keeping the interpreter
        lock where libcuda allows: gpu/lock_held.py)."""
        if nbytes > self.nbytes:
            raise CudaError(f"copy of {nbytes} bytes into a {self.nbytes}-byte host buffer")
        driver = LockHeldDriver.shared()
        if driver is not None and driver.copy_device_to_host_async(self.ptr, src_ptr, nbytes, stream):
            return
        rt = self._rt
        check(rt.cudaMemcpyAsync(self.ptr, src_ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream),
              "cudaMemcpyAsync device to host", rt)

    def free(self) -> None:
        """Release the memory (the array becomes empty first). Safe to call twice."""
        if self.ptr:
            self.array = np.empty(0, self.dtype)  # drop the view before the memory goes
            ptr, self.ptr = self.ptr, 0
            check(self._rt.cudaFreeHost(ptr), "cudaFreeHost", self._rt)

    close = free

    def __enter__(self) -> "PinnedHostArray":
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()
