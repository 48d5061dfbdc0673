"""Device images for the GPU path: pooled cudaMalloc buffers behind __cuda_array_interface__.

Only cuda-python (`cuda.bindings`, the [gpu] extra) is needed, imported on first use, so the CPU
install never loads it. A DeviceImage owns one buffer of its camera's pool; when the last reference
to it goes (the preprocessor has copied it into its batch), the buffer returns to the pool instead
of being freed: cudaFree synchronises the whole device and would stall every other stream.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from pipeline.gpu.runtime import check, load_cuda_runtime

# Free buffers kept per size; more than this (after a resolution change, say) are freed.
MAX_FREE_PER_SIZE = 64


# The loader, error type and check live in pipeline/gpu/runtime.py; these names stay importable here.
cuda_runtime = load_cuda_runtime


def cuda_array_interface(shape: tuple[int, ...], typestr: str, ptr: int) -> dict[str, Any]:
    """__cuda_array_interface__ v3 of a C-contiguous array at `ptr`, with no stream (the data are
    complete when the object exposing it is made)."""
    return {"shape": shape, "typestr": typestr, "data": (ptr, False), "version": 3,
            "strides": None, "stream": None}


def device_to_host(ptr: int, shape: tuple[int, ...], dtype: Any, keep_lock: bool = False) -> np.ndarray:
    """A numpy copy of the C-contiguous device array at `ptr`, done when this returns (no stream:
    the work that wrote it must have finished). keep_lock: copy without letting go of the
    interpreter lock (pipeline/gpu/lock_held.py), for small copies on a thread whose waits for the
    lock cost more than the copy (the inference thread's candidates)."""
    out = np.empty(shape, dtype)
    if keep_lock:
        from pipeline.gpu.lock_held import LockHeldDriver

        driver = LockHeldDriver.shared()  # None (no libcuda) or False (no context yet): the usual way
        if driver is not None and driver.copy_device_to_host(out.ctypes.data, ptr, out.nbytes):
            return out
    rt = cuda_runtime()
    check(rt.cudaMemcpy(out.ctypes.data, ptr, out.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost),
          "cudaMemcpy device to host")
    return out


class DeviceBufferPool:
    """Reusable device buffers on one GPU, keyed by size. Thread-safe: buffers come back from
    whichever thread drops the last DeviceImage."""

    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        self._rt = cuda_runtime()
        self._lock = threading.Lock()
        self._free: dict[int, list[int]] = {}
        self._closed = False
        self.allocated = 0  # buffers ever allocated (tests, diagnostics)

    def take(self, nbytes: int) -> int:
        with self._lock:
            free = self._free.get(nbytes)
            if free:
                return free.pop()
        check(self._rt.cudaSetDevice(self.device_id), "cudaSetDevice")
        ptr = int(check(self._rt.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))
        with self._lock:
            self.allocated += 1
        return ptr

    def give_back(self, ptr: int, nbytes: int) -> None:
        with self._lock:
            free = self._free.setdefault(nbytes, [])
            if not self._closed and len(free) < MAX_FREE_PER_SIZE:
                free.append(ptr)
                return
        self._rt.cudaFree(ptr)

    def close(self) -> None:
        """Free the idle buffers; buffers still in use are freed when their images go."""
        with self._lock:
            self._closed = True
            idle = [p for ptrs in self._free.values() for p in ptrs]
            self._free.clear()
        for ptr in idle:
            self._rt.cudaFree(ptr)


class DeviceImageView:
    """An HxWx3 uint8 RGB picture at `ptr` in device memory (C-contiguous). Exposes only
    __cuda_array_interface__ (v3, no stream: the pixels are complete when the object is made),
    never __array_interface__, so nothing copies it to the host by accident. Subclasses own the
    memory: DeviceImage (a pooled buffer), workers.cuda_ipc.SharedDeviceImage (another process's)."""

    def __init__(self, device_id: int, ptr: int, height: int, width: int) -> None:
        self.shape = (int(height), int(width), 3)
        self.nbytes = self.shape[0] * self.shape[1] * 3
        self.device_id = device_id
        self.ptr = ptr

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return cuda_array_interface(self.shape, "|u1", self.ptr)

    def to_host(self) -> np.ndarray:
        """A numpy copy (tests, debugging only)."""
        return device_to_host(self.ptr, self.shape, np.uint8)


class DeviceImage(DeviceImageView):
    """A picture in one buffer of its camera's pool; the buffer goes back when the image goes."""

    def __init__(self, pool: DeviceBufferPool, height: int, width: int) -> None:
        nbytes = int(height) * int(width) * 3
        super().__init__(pool.device_id, pool.take(nbytes), height, width)
        self._release = weakref.finalize(self, pool.give_back, self.ptr, self.nbytes)


def upload(pool: DeviceBufferPool, image: np.ndarray) -> DeviceImage:
    """Copy a host HxWx3 uint8 image into a pooled DeviceImage (synchronous)."""
    rt = cuda_runtime()
    image = np.ascontiguousarray(image)
    out = DeviceImage(pool, image.shape[0], image.shape[1])
    check(rt.cudaMemcpy(out.ptr, image.ctypes.data, out.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice),
          "cudaMemcpy host to device")
    return out


def memory_type(ptr: int) -> str:
    """'device', 'host', 'managed' or 'unregistered': where cuPointerGetAttribute says `ptr` lives."""
    from cuda.bindings import driver

    attribute = driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_MEMORY_TYPE
    err, value = driver.cuPointerGetAttribute(attribute, ptr)
    if int(err) != 0:
        return "unregistered"  # plain malloc'd host memory is unknown to CUDA
    kind = int(value)
    if kind == int(driver.CUmemorytype.CU_MEMORYTYPE_DEVICE):
        err, managed = driver.cuPointerGetAttribute(driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_IS_MANAGED, ptr)
        return "managed" if int(err) == 0 and int(managed) else "device"
    if kind == int(driver.CUmemorytype.CU_MEMORYTYPE_HOST):
        return "host"
    return f"other({kind})"
