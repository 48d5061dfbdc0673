"""CUDA memory, streams and device identity for backend tensorrt, through cuda-python's runtime
bindings (`cuda.bindings.runtime`; `cuda.cudart` on older cuda-python). No pycuda.

Every wrapper takes the runtime module as an argument: production passes `load_cuda_runtime()`,
the unit tests pass the fake in tests/support/mock_tensorrt.py (nothing here can execute on
a machine without an NVIDIA driver).
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from pipeline.gpu.memory import CudaError, cuda_runtime
from pipeline.infer.tensorrt.engine_cache import GpuIdentity


def load_cuda_runtime() -> Any:
    return cuda_runtime("model.backend: tensorrt needs cuda-python (pip install 'pipeline[tensorrt]')")


def check(runtime: Any, result: Any, what: str) -> Any:
    """cuda-python returns (error, *values): raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = getattr(err, "name", str(err))
        try:
            text = runtime.cudaGetErrorString(err)[1]
            text = text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # noqa: BLE001 - the error name alone still says enough
            text = ""
        raise CudaError(f"{what} failed: {name}" + (f" ({text})" if text else ""))
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def set_device(runtime: Any, device_id: int) -> None:
    check(runtime, runtime.cudaSetDevice(device_id), f"cudaSetDevice({device_id})")


def gpu_identity(runtime: Any, device_id: int) -> GpuIdentity:
    props = check(runtime, runtime.cudaGetDeviceProperties(device_id), f"cudaGetDeviceProperties({device_id})")
    name = props.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return GpuIdentity(str(name).strip(), f"{int(props.major)}.{int(props.minor)}")


class CudaStream:
    """A non-blocking stream (no implicit sync with the legacy default stream DALI or ORT may use)."""

    def __init__(self, runtime: Any) -> None:
        self._rt = runtime
        flags = getattr(runtime, "cudaStreamNonBlocking", 1)
        self._stream = check(runtime, runtime.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags")

    @property
    def handle(self) -> int:
        return int(self._stream)

    def synchronize(self) -> None:
        check(self._rt, self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self._stream is not None:
            check(self._rt, self._rt.cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None


class DeviceBuffer:
    """cudaMalloc'd bytes, allocated once and reused; `upload` is a synchronous host-to-device copy
    (the calibrator's use)."""

    def __init__(self, runtime: Any, nbytes: int) -> None:
        self._rt = runtime
        self.nbytes = int(nbytes)
        self.ptr = int(check(runtime, runtime.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})"))

    def upload(self, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        if array.nbytes > self.nbytes:
            raise ValueError(f"{array.nbytes} bytes do not fit a device buffer of {self.nbytes}")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(self._rt, self._rt.cudaMemcpy(self.ptr, array.ctypes.data, array.nbytes, kind), "cudaMemcpy to device")
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            check(self._rt, self._rt.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedHostArray:
    """A numpy array in page-locked host memory: the only kind cudaMemcpyAsync copies asynchronously."""

    def __init__(self, runtime: Any, shape: tuple[int, ...], dtype: Any) -> None:
        self._rt = runtime
        self.dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self.ptr = int(check(runtime, runtime.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
        raw = (ctypes.c_byte * nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=self.dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = np.empty(0, self.dtype)  # drop the view before the memory goes
            check(self._rt, self._rt.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


def copy_to_device_async(runtime: Any, dst_ptr: int, src: np.ndarray, nbytes: int, stream: CudaStream) -> None:
    kind = runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
    check(runtime, runtime.cudaMemcpyAsync(dst_ptr, src.ctypes.data, nbytes, kind, stream.handle),
          "cudaMemcpyAsync to device")


def copy_to_host_async(runtime: Any, dst: np.ndarray, src_ptr: int, nbytes: int, stream: CudaStream) -> None:
    kind = runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
    check(runtime, runtime.cudaMemcpyAsync(dst.ctypes.data, src_ptr, nbytes, kind, stream.handle),
          "cudaMemcpyAsync to host")
