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

from pipeline.gpu.runtime import check


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
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self.ptr = int(check(runtime.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})", runtime))
        raw = (ctypes.c_byte * nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=self.dtype).reshape(shape)

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
