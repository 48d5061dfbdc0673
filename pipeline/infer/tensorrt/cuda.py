"""Device identity, the tensorrt loader message and async copies for backend tensorrt; the CUDA
loader, error, check, stream and buffers are the package's own (pipeline/gpu/).

Every wrapper takes the runtime module as an argument: production passes `load_cuda_runtime()`,
the unit tests pass the fake in tests/support/mock_tensorrt.py (nothing here can execute on
a machine without an NVIDIA driver).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.gpu.runtime import check
from pipeline.gpu.runtime import load_cuda_runtime as _load_runtime
from pipeline.gpu.stream import CudaStream
from pipeline.infer.tensorrt.engine_cache import GpuIdentity


def load_cuda_runtime() -> Any:
    return _load_runtime("model.backend: tensorrt needs cuda-python (pip install 'pipeline[tensorrt]')")


def set_device(runtime: Any, device_id: int) -> None:
    check(runtime.cudaSetDevice(device_id), f"cudaSetDevice({device_id})", runtime)


def gpu_identity(runtime: Any, device_id: int) -> GpuIdentity:
    props = check(runtime.cudaGetDeviceProperties(device_id), f"cudaGetDeviceProperties({device_id})", runtime)
    name = props.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return GpuIdentity(str(name).strip(), f"{int(props.major)}.{int(props.minor)}")


def copy_to_device_async(runtime: Any, dst_ptr: int, src: np.ndarray, nbytes: int, stream: CudaStream) -> None:
    kind = runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
    check(runtime.cudaMemcpyAsync(dst_ptr, src.ctypes.data, nbytes, kind, stream.handle),
          "cudaMemcpyAsync to device", runtime)


def copy_to_host_async(runtime: Any, dst: np.ndarray, src_ptr: int, nbytes: int, stream: CudaStream) -> None:
    kind = runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
    check(runtime.cudaMemcpyAsync(dst.ctypes.data, src_ptr, nbytes, kind, stream.handle),
          "cudaMemcpyAsync to host", runtime)
