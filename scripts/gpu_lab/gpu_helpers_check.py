#!/usr/bin/env python3
"""Run pipeline/gpu/'s helpers against the real CUDA runtime (cuda-python) on a GPU machine: the
check and its error text, CudaStream (plain, highest priority), DeviceBuffer / PinnedHostArray round
trips, device-to-device copies with and without a stream, the producer-stream wait, the camera
picture pool, the TensorRT device identity and ONNX Runtime's priority stream helper.

    python scripts/gpu_lab/gpu_helpers_check.py     (needs numpy and cuda-python; no DALI, ORT or PyAV)

Prints one line per check and exits 1 if any failed. The unit tests run the same wrappers against
the mock in tests/support/mock_tensorrt.py; this is the part only a GPU can answer.
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.gpu import device_buffer  # noqa: E402
from pipeline.gpu.buffers import DeviceBuffer, PinnedHostArray  # noqa: E402
from pipeline.gpu.memory import DeviceBufferPool, memory_type, upload  # noqa: E402
from pipeline.gpu.runtime import CudaError, check, load_cuda_runtime, visible_gpu_count  # noqa: E402
from pipeline.gpu.stream import CudaStream  # noqa: E402

RESULTS: list[bool] = []


def case(name: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    def wrap(fn: Callable[[], str]) -> Callable[[], str]:
        try:
            detail = fn()
            print(f"PASS {name}: {detail}")
            RESULTS.append(True)
        except Exception as exc:  # noqa: BLE001 - report every check
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3)
            RESULTS.append(False)
        return fn
    return wrap


rt = load_cuda_runtime()


@case("visible_gpu_count")
def _() -> str:
    n = visible_gpu_count()
    assert n >= 1, n
    return f"{n} GPU(s)"


@case("check raises one line with the runtime's text")
def _() -> str:
    try:
        check(rt.cudaSetDevice(999), "cudaSetDevice(999)", rt)
    except CudaError as exc:
        text = str(exc)
        assert "\n" not in text and text.startswith("cudaSetDevice(999) failed: cudaErrorInvalidDevice"), text
        return text
    raise AssertionError("no error for device 999")


@case("CudaStream plain and highest priority, close twice")
def _() -> str:
    plain = CudaStream(rt, device_id=0)
    high = CudaStream(rt, device_id=0, highest_priority=True)
    got = int(check(rt.cudaStreamGetPriority(high.handle), "cudaStreamGetPriority", rt))
    assert got == high.priority, (got, high.priority)
    plain.synchronize()
    high.synchronize()
    for s in (plain, high):
        s.close()
        s.close()
    return f"priority {high.priority}"


@case("DeviceBuffer + PinnedHostArray round trip on a stream")
def _() -> str:
    from pipeline.infer.tensorrt.cuda import copy_to_device_async, copy_to_host_async

    src = np.arange(4096, dtype=np.float32).reshape(64, 64)
    with CudaStream(rt, 0) as stream, DeviceBuffer(rt, src.nbytes) as dev, \
            PinnedHostArray(rt, src.shape, src.dtype) as pin_in, PinnedHostArray(rt, src.shape, src.dtype) as pin_out:
        pin_in.array[:] = src
        copy_to_device_async(rt, dev.ptr, pin_in.array, src.nbytes, stream)
        copy_to_host_async(rt, pin_out.array, dev.ptr, src.nbytes, stream)
        stream.synchronize()
        assert np.array_equal(pin_out.array, src)
    assert dev.ptr == 0 and pin_in.ptr == 0
    dev.free()  # safe twice
    return f"{src.nbytes} bytes"


@case("copy_device_to_device with and without a stream; producer-stream wait")
def _() -> str:
    src = np.random.default_rng(1).random((2, 3, 8, 8), dtype=np.float32)
    with DeviceBuffer(rt, src.nbytes) as a, DeviceBuffer(rt, src.nbytes) as b, DeviceBuffer(rt, src.nbytes) as c, \
            CudaStream(rt, 0) as stream:
        a.upload(src)
        device_buffer.copy_device_to_device(b.ptr, a.ptr, src.nbytes)  # synchronous
        device_buffer.copy_device_to_device(c.ptr, b.ptr, src.nbytes, stream.handle)
        stream.synchronize()

        class Cai:
            __cuda_array_interface__ = {"shape": src.shape, "typestr": "<f4", "data": (c.ptr, False),
                                        "version": 3, "strides": None, "stream": stream.handle}

        view = device_buffer.device_view(Cai(), src.shape, "check")
        out = np.empty_like(src)
        check(rt.cudaMemcpy(out.ctypes.data, view.ptr, src.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost),
              "cudaMemcpy", rt)
        assert np.array_equal(out, src)
    return "ok"


@case("DeviceBufferPool + upload + DeviceImage.to_host; memory_type")
def _() -> str:
    pool = DeviceBufferPool(0)
    image = np.random.default_rng(2).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    dev = upload(pool, image)
    assert np.array_equal(dev.to_host(), image)
    kind = memory_type(dev.ptr)
    assert kind == "device", kind
    ptr = dev.ptr
    del dev
    again = upload(pool, image)  # the same size comes back from the pool
    assert again.ptr == ptr and pool.allocated == 1
    del again
    pool.close()
    return kind


@case("gpu_identity (TensorRT engine cache key)")
def _() -> str:
    from pipeline.infer.tensorrt.cuda import gpu_identity, set_device

    set_device(rt, 0)
    ident = gpu_identity(rt, 0)
    assert ident.name and ident.compute_capability, ident
    return f"{ident.name} sm {ident.compute_capability}"


@case("ONNX Runtime priority stream helper")
def _() -> str:
    from pipeline.infer.onnxruntime.gpu_sessions import priority_stream, stream_provider_options

    stream = priority_stream(0)
    opts = stream_provider_options(stream)
    assert opts == {"user_compute_stream": str(stream.handle)} and stream.handle
    stream.close()
    return str(opts)


print(f"{sum(RESULTS)} of {len(RESULTS)} passed")
sys.exit(0 if all(RESULTS) else 1)
