"""pipeline/gpu/: the one CUDA check, stream wrapper and device buffer, run against the CUDA runtime
MOCK of tests/support/mock_tensorrt.py (no GPU here; the real runtime is exercised by tests/gpu)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.gpu.buffers import DeviceBuffer, PinnedHostArray
import pipeline.gpu.runtime as runtime_module
from pipeline.gpu.runtime import CudaError, check, loaded_cuda_runtimes, visible_gpu_count
from pipeline.gpu.stream import CudaStream
from tests.support.mock_tensorrt import FakeCudaError, FakeCudaRuntime


def test_check_unpacks_values_and_raises_one_line_naming_the_call() -> None:
    assert check((FakeCudaError.cudaSuccess,), "x") is None
    assert check((FakeCudaError.cudaSuccess, 7), "x") == 7
    assert check((FakeCudaError.cudaSuccess, 1, 2), "x") == (1, 2)
    with pytest.raises(CudaError, match=r"^cudaSetDevice\(3\) failed: cudaErrorInvalidValue$"):
        check((FakeCudaError.cudaErrorInvalidValue,), "cudaSetDevice(3)")
    rt = FakeCudaRuntime()
    with pytest.raises(CudaError, match=r"^cudaSetDevice\(3\) failed: cudaErrorInvalidValue \(fake error\)$"):
        check(rt.cudaSetDevice(3), "cudaSetDevice(3)", rt)


def test_a_stream_synchronizes_and_closes_once() -> None:
    rt = FakeCudaRuntime()
    stream = CudaStream(rt)
    handle = stream.handle
    assert handle in rt.streams and stream.priority is None
    stream.synchronize()
    assert rt.streams[handle].synchronized == 1
    stream.close()
    stream.close()  # the second is a no-op, not a cudaErrorInvalidValue
    assert handle not in rt.streams and stream.handle == 0


class PriorityRuntime(FakeCudaRuntime):
    """The MOCK plus the two calls of a highest-priority stream."""

    def cudaDeviceGetStreamPriorityRange(self) -> tuple[Any, int, int]:
        return FakeCudaError.cudaSuccess, 0, -5

    def cudaStreamCreateWithPriority(self, flags: int, priority: int) -> tuple[Any, int]:
        self.calls.append(("cudaStreamCreateWithPriority", priority))
        return self.cudaStreamCreateWithFlags(flags)


def test_a_highest_priority_stream_on_a_device() -> None:
    rt = PriorityRuntime()
    with CudaStream(rt, device_id=0, highest_priority=True) as stream:
        assert stream.priority == -5 and ("cudaStreamCreateWithPriority", -5) in rt.calls
        assert ("cudaSetDevice", 0) in rt.calls
    assert not rt.streams
    with pytest.raises(CudaError, match=r"cudaSetDevice\(1\) failed"):
        CudaStream(rt, device_id=1)  # the mock has one GPU


def test_device_and_pinned_buffers_free_explicitly_once() -> None:
    rt = FakeCudaRuntime()
    with DeviceBuffer(rt, 64) as buf, PinnedHostArray(rt, (4, 4), np.float32) as pinned:
        pinned.array[:] = 3
        assert buf.upload(pinned.array) == buf.ptr
        assert np.frombuffer(rt.device_memory[buf.ptr], np.uint8).size >= 64
        with pytest.raises(ValueError, match="do not fit"):
            buf.upload(np.zeros(65, np.uint8))
    assert buf.ptr == 0 and pinned.ptr == 0 and not rt.device_memory and not rt.host_memory
    buf.free()
    pinned.close()  # both safe twice
    assert rt.count("cudaFree") == 1 and rt.count("cudaFreeHost") == 1


def test_a_pinned_array_fills_from_the_device_on_a_stream_and_refuses_an_oversized_copy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.gpu.lock_held import LockHeldDriver

    monkeypatch.setattr(LockHeldDriver, "shared", classmethod(lambda cls: None))  # fake pointers: the runtime path
    rt = FakeCudaRuntime()
    src = np.arange(8, dtype=np.float32)
    with DeviceBuffer(rt, src.nbytes) as buf, PinnedHostArray(rt, (2, 4), np.float32) as pinned:
        buf.upload(src)
        stream = CudaStream(rt)
        pinned.copy_from_device_async(buf.ptr, 4 * 4, stream.handle)  # the first row only
        stream.synchronize()
        assert pinned.array[0].tolist() == [0.0, 1.0, 2.0, 3.0] and rt.count("cudaMemcpyAsync") == 1
        with pytest.raises(CudaError, match="copy of 36 bytes into a 32-byte host buffer"):
            pinned.copy_from_device_async(buf.ptr, 36, stream.handle)
        stream.close()


def test_no_driver_or_no_cuda_python_means_no_visible_gpu() -> None:
    if Path("/dev/nvidiactl").exists():
        pytest.skip("an NVIDIA driver is loaded here")
    assert visible_gpu_count() == 0  # not an exception: `pipeline check` calls it on any box


def test_loaded_cuda_runtimes_are_read_from_the_process_maps(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 11 /site/nvidia/cu13/lib/libcudart.so.13\n"
        "7f01-7f02 r--p 00001000 08:01 11 /site/nvidia/cu13/lib/libcudart.so.13\n"
        "7f02-7f03 r-xp 00000000 08:01 12 /usr/lib/libc.so.6\n"
        "7f03-7f04 rw-p 00000000 00:00 0 \n"
        "7f04-7f05 r-xp 00000000 08:01 13 /opt/cuda/lib64/libcudart.so.12.8.90\n")
    assert loaded_cuda_runtimes(str(maps)) == ["/opt/cuda/lib64/libcudart.so.12.8.90",
                                               "/site/nvidia/cu13/lib/libcudart.so.13"]
    assert loaded_cuda_runtimes(str(tmp_path / "absent")) == []


def test_clearing_last_errors_skips_libraries_without_a_cuda_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes.util

    libc = ctypes.util.find_library("c")
    assert libc
    monkeypatch.setattr(runtime_module, "loaded_cuda_runtimes", lambda: [libc, "/nonexistent/libcudart.so.13"])
    runtime_module.clear_last_errors()  # neither a library without cudaGetLastError nor a missing one raises
