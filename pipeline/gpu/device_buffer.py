"""CUDA input buffers described by __cuda_array_interface__ (v2/v3), without a CUDA array library.

A buffer is only a pointer, shape and dtype; splitting a batch is pointer arithmetic. The one thing
that needs the CUDA runtime (cuda-python, the [gpu] extra) is waiting for the producer's stream
and copying into a padded staging buffer for fixed-batch models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.gpu.runtime import check, load_cuda_runtime


@dataclass(frozen=True, eq=False)
class DeviceView:
    """A C-contiguous slice of a device buffer. `owner` keeps the memory alive while it is used."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    owner: Any

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


def device_view(obj: Any, expected_shape: tuple[int, ...], where: str) -> DeviceView:
    """Validate a __cuda_array_interface__ object against the shape the model wants."""
    iface = obj.__cuda_array_interface__
    shape = tuple(int(d) for d in iface["shape"])
    dtype = np.dtype(iface["typestr"])
    if shape != expected_shape:
        raise ValueError(f"{where}: device input is {list(shape)}, model wants {list(expected_shape)}")
    strides = iface.get("strides")
    if strides is not None and tuple(strides) != _contiguous_strides(shape, dtype.itemsize):
        raise ValueError(f"{where}: device input must be C-contiguous (strides {tuple(strides)})")
    _wait_for_producer(iface.get("stream"))
    return DeviceView(int(iface["data"][0]), shape, dtype, obj)


def split(view: DeviceView, step: int) -> list[tuple[DeviceView, int]]:
    """Pieces of at most `step` items along axis 0 (views into the same memory)."""
    count = view.shape[0]
    item = view.nbytes // count if count else 0
    return [(DeviceView(view.ptr + i * item, (min(step, count - i),) + view.shape[1:], view.dtype, view.owner),
             min(step, count - i)) for i in range(0, count, step)]


PER_THREAD_STREAM = 2  # cudaStreamPerThread


def copy_device_to_device(dst_ptr: int, src_ptr: int, nbytes: int, stream: int | None = None) -> None:
    """Copy between device buffers.

    stream given: enqueue the copy on it and return; work queued later on that stream (ONNX
    Runtime's compute stream, when it is ours) runs after it, and the source must stay alive until
    then. No stream: copy and wait until done. A plain cudaMemcpy returns before the copy ends and
    ONNX Runtime's own stream does not wait for it, so this thread's stream is used and synchronized
    (measured on the H200: ~2.3 ms per batch under load, since that stream also waits for the legacy
    default stream's work; hence the stream argument)."""
    if stream is not None and _queue_with_the_lock_held(dst_ptr, src_ptr, nbytes, stream):
        return
    runtime = _cuda_runtime()
    on = PER_THREAD_STREAM if stream is None else stream
    check(runtime.cudaMemcpyAsync(dst_ptr, src_ptr, nbytes, runtime.cudaMemcpyKind.cudaMemcpyDeviceToDevice, on),
          "cudaMemcpyAsync device to device")
    if stream is None:
        check(runtime.cudaStreamSynchronize(PER_THREAD_STREAM), "cudaStreamSynchronize")


def _queue_with_the_lock_held(dst_ptr: int, src_ptr: int, nbytes: int, stream: int) -> bool:
    """Queue the copy without letting go of the interpreter lock (pipeline/gpu/lock_held.py); False
    when that cannot be done here (no libcuda, no context current yet): then the caller copies the
    usual way, which also makes the context current for next time."""
    from pipeline.gpu.lock_held import LockHeldDriver

    driver = LockHeldDriver.shared()
    return driver is not None and driver.copy_device_to_device_async(dst_ptr, src_ptr, nbytes, stream)


def _contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


def _wait_for_producer(stream: int | None) -> None:
    # CAI v3: when "stream" is set, the consumer must synchronise with it before reading.
    # ORT runs on its own stream, so a host-side wait is the simple correct choice.
    if stream is None:
        return
    runtime = _cuda_runtime()
    check(runtime.cudaStreamSynchronize(stream), "cudaStreamSynchronize on the producer's stream")


def _cuda_runtime() -> Any:
    return load_cuda_runtime("GPU input buffers need cuda-python (install the [gpu] extra)")
