"""MOCK TensorRT runtime and MOCK CUDA runtime, for the backend's execution path only.

This is a mock because TensorRT cannot execute on any machine this project has: there is no
NVIDIA driver on the CPU box, the full TensorRT libraries are not on any reachable registry, and
TensorRT-RTX (which installs) refuses to run on the Hopper GPU. The engine *build* path is tested
for real with TensorRT-RTX (test_tensorrt_build_rtx.py); only deserialize/execute is faked here.

What is faked, and how:
- `FakeCudaRuntime` mimics cuda-python's `cuda.bindings.runtime` calls the backend makes
  ((error, value) tuples). "Device" memory is host memory (numpy buffers), so copies are
  memmoves. Streams are really asynchronous in one respect that matters: work enqueued on a
  stream (copies, executions) runs only when that stream is synchronized, so reading results
  early, or reusing a buffer before its stream finished, gives wrong numbers.
- `FakeTensorRt` provides Runtime/ICudaEngine/IExecutionContext with the TensorRT 10 names the
  backend uses. A fake "plan" is JSON naming the ONNX file and the profiles; execution runs that
  ONNX model with the real onnxruntime, reading the input from and writing the output to the
  bound addresses. It refuses (like TensorRT) unbound tensors, shapes outside the profile, and two
  contexts using one optimization profile while both have work in flight.
"""
from __future__ import annotations

import ctypes
import enum
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import onnxruntime as ort

OK = 0
ERROR_INVALID_VALUE = 1


class FakeCudaError(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1


@dataclass
class FakeStream:
    handle: int
    pending: list[Callable[[], None]] = field(default_factory=list)
    synchronized: int = 0


class FakeCudaRuntime:
    """The subset of cuda.bindings.runtime used by pipeline.infer.tensorrt.cuda (a MOCK; see module doc)."""

    cudaStreamNonBlocking = 1
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2,
                                     cudaMemcpyDeviceToDevice=3)

    def __init__(self, gpu_name: str = "NVIDIA H200", capability: tuple[int, int] = (9, 0)) -> None:
        self.gpu_name = gpu_name
        self.capability = capability
        self.device_memory: dict[int, np.ndarray] = {}
        self.host_memory: dict[int, np.ndarray] = {}
        self.streams: dict[int, FakeStream] = {}
        self.calls: list[tuple[str, Any]] = []
        self._next_stream = 0x5000
        self.max_streams_busy = 0  # most streams holding unsynchronized work at one time

    # -------------------------------------------------------------- device

    def cudaSetDevice(self, device: int) -> tuple[FakeCudaError]:
        self.calls.append(("cudaSetDevice", device))
        return (FakeCudaError.cudaSuccess,) if device == 0 else (FakeCudaError.cudaErrorInvalidValue,)

    def cudaGetDeviceProperties(self, device: int) -> tuple[FakeCudaError, Any]:
        props = SimpleNamespace(name=self.gpu_name.encode() + b"\0junk", major=self.capability[0],
                                minor=self.capability[1])
        return FakeCudaError.cudaSuccess, props

    def cudaGetErrorString(self, err: Any) -> tuple[FakeCudaError, bytes]:
        return FakeCudaError.cudaSuccess, b"fake error"

    # -------------------------------------------------------------- memory

    def _alloc(self, table: dict[int, np.ndarray], nbytes: int) -> int:
        buf = np.zeros(max(1, nbytes) + 256, dtype=np.uint8)
        ptr = (buf.ctypes.data + 255) // 256 * 256  # 256-byte aligned, like cudaMalloc
        table[ptr] = buf
        return ptr

    def cudaMalloc(self, nbytes: int) -> tuple[FakeCudaError, int]:
        self.calls.append(("cudaMalloc", nbytes))
        return FakeCudaError.cudaSuccess, self._alloc(self.device_memory, nbytes)

    def cudaFree(self, ptr: int) -> tuple[FakeCudaError]:
        self.calls.append(("cudaFree", ptr))
        return (FakeCudaError.cudaSuccess,) if self.device_memory.pop(ptr, None) is not None \
            else (FakeCudaError.cudaErrorInvalidValue,)

    def cudaMallocHost(self, nbytes: int) -> tuple[FakeCudaError, int]:
        self.calls.append(("cudaMallocHost", nbytes))
        return FakeCudaError.cudaSuccess, self._alloc(self.host_memory, nbytes)

    def cudaFreeHost(self, ptr: int) -> tuple[FakeCudaError]:
        self.calls.append(("cudaFreeHost", ptr))
        return (FakeCudaError.cudaSuccess,) if self.host_memory.pop(ptr, None) is not None \
            else (FakeCudaError.cudaErrorInvalidValue,)

    def cudaMemcpy(self, dst: int, src: int, nbytes: int, kind: int) -> tuple[FakeCudaError]:
        self.calls.append(("cudaMemcpy", kind))
        ctypes.memmove(int(dst), int(src), int(nbytes))
        return (FakeCudaError.cudaSuccess,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> tuple[FakeCudaError]:
        self.calls.append(("cudaMemcpyAsync", kind))
        dst, src, nbytes = int(dst), int(src), int(nbytes)
        self.enqueue(int(stream), lambda: ctypes.memmove(dst, src, nbytes))
        return (FakeCudaError.cudaSuccess,)

    # -------------------------------------------------------------- streams

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[FakeCudaError, int]:
        self._next_stream += 1
        self.streams[self._next_stream] = FakeStream(self._next_stream)
        return FakeCudaError.cudaSuccess, self._next_stream

    def cudaStreamSynchronize(self, stream: int) -> tuple[FakeCudaError]:
        s = self.streams.get(int(stream))
        if s is None:
            return (FakeCudaError.cudaErrorInvalidValue,)
        work, s.pending = s.pending, []
        for op in work:
            op()
        s.synchronized += 1
        return (FakeCudaError.cudaSuccess,)

    def cudaStreamDestroy(self, stream: int) -> tuple[FakeCudaError]:
        return (FakeCudaError.cudaSuccess,) if self.streams.pop(int(stream), None) is not None \
            else (FakeCudaError.cudaErrorInvalidValue,)

    def enqueue(self, stream: int, op: Callable[[], None]) -> None:
        self.streams[stream].pending.append(op)
        busy = sum(1 for s in self.streams.values() if s.pending)
        self.max_streams_busy = max(self.max_streams_busy, busy)

    def busy(self, stream: int) -> bool:
        s = self.streams.get(stream)
        return bool(s and s.pending)

    # -------------------------------------------------------------- helpers for tests

    def device_array(self, array: np.ndarray) -> "FakeDeviceArray":
        """Copy `array` into fake device memory: a __cuda_array_interface__ object like DALI's output."""
        array = np.ascontiguousarray(array)
        ptr = self.cudaMalloc(array.nbytes)[1]
        ctypes.memmove(ptr, array.ctypes.data, array.nbytes)
        return FakeDeviceArray(ptr, array.shape, array.dtype)

    def count(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)


@dataclass
class FakeDeviceArray:
    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": np.dtype(self.dtype).str, "data": (self.ptr, False),
                "version": 3, "strides": None, "stream": None}


def fake_plan(onnx_path: str, input_name: str, profile: tuple[int, int, int], profiles: int, input_size: int,
              input_dtype: str = "float32") -> bytes:
    """What the fake Runtime deserializes (a real plan is an opaque TensorRT binary)."""
    return json.dumps({"fake_tensorrt_plan": 1, "onnx": onnx_path, "input": input_name, "profile": list(profile),
                       "profiles": profiles, "size": input_size, "dtype": input_dtype}).encode()


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = "float32"
    HALF = "float16"


class FakeILogger:
    def __init__(self) -> None:
        pass


class FakeEngine:
    def __init__(self, trt: "FakeTensorRt", plan: dict[str, Any]) -> None:
        self._trt = trt
        self.plan = plan
        self.session = ort.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])
        out = self.session.get_outputs()[0]
        self.output_name = out.name
        self.output_tail = tuple(int(d) for d in out.shape[1:])
        self.num_optimization_profiles = int(plan["profiles"])
        self.contexts: list[FakeContext] = []
        self.profile_users: dict[int, FakeContext] = {}

    @property
    def num_io_tensors(self) -> int:
        return 2

    def get_tensor_name(self, i: int) -> str:
        return [self.plan["input"], self.output_name][i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == self.plan["input"] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType(self.plan["dtype"]) if name == self.plan["input"] else DataType.FLOAT

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple[tuple[int, ...], ...]:
        s = self.plan["size"]
        return tuple((b, 3, s, s) for b in self.plan["profile"])

    def create_execution_context(self) -> "FakeContext":
        ctx = FakeContext(self)
        self.contexts.append(ctx)
        return ctx


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.profile = 0
        self.input_shape: tuple[int, ...] | None = None
        self.addresses: dict[str, int] = {}
        self.executions = 0
        self.stream: int | None = None

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        if not 0 <= index < self.engine.num_optimization_profiles:
            return False
        self.profile = index
        return True

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        lo, _, hi = self.engine.plan["profile"]
        s = self.engine.plan["size"]
        if name != self.engine.plan["input"] or len(shape) != 4 or tuple(shape[1:]) != (3, s, s) \
                or not lo <= shape[0] <= hi:
            return False
        self.input_shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        assert self.input_shape is not None, "input shape not set"
        if name == self.engine.plan["input"]:
            return self.input_shape
        return (self.input_shape[0],) + self.engine.output_tail

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        rt = self.engine._trt.cuda
        # TensorRT: one profile must not serve two contexts with work in flight
        other = self.engine.profile_users.get(self.profile)
        if other is not None and other is not self and other.stream is not None and rt.busy(other.stream):
            raise AssertionError(f"profile {self.profile} used by two contexts in flight")
        self.engine.profile_users[self.profile] = self
        names = [self.engine.plan["input"], self.engine.output_name]
        if any(n not in self.addresses for n in names) or self.input_shape is None:
            return False
        shape, dtype = self.input_shape, np.dtype(self.engine.plan["dtype"])
        in_ptr, out_ptr = self.addresses[names[0]], self.addresses[names[1]]
        self.stream = int(stream_handle)
        self.executions += 1

        def run() -> None:  # runs when the stream is synchronized
            n = int(np.prod(shape)) * dtype.itemsize
            x = np.frombuffer((ctypes.c_byte * n).from_address(in_ptr), dtype=dtype).reshape(shape).copy()
            y = np.ascontiguousarray(self.engine.session.run(None, {names[0]: x})[0], dtype=np.float32)
            ctypes.memmove(out_ptr, y.ctypes.data, y.nbytes)

        rt.enqueue(int(stream_handle), run)
        return True


class FakeRuntime:
    def __init__(self, trt: "FakeTensorRt", logger: Any) -> None:
        self._trt = trt

    def deserialize_cuda_engine(self, plan: bytes) -> FakeEngine | None:
        try:
            data = json.loads(bytes(plan))
        except ValueError:
            return None  # TensorRT returns None for a plan it cannot read
        if not isinstance(data, dict) or data.get("fake_tensorrt_plan") != 1:
            return None
        engine = FakeEngine(self._trt, data)
        self._trt.engines.append(engine)
        return engine


class FakeTensorRt:
    """Stands in for the `tensorrt` module at run time (a MOCK; see module doc). It cannot build:
    tests seed the engine cache with `fake_plan` bytes."""

    __version__ = "10.99.0-fake"
    TensorIOMode = TensorIOMode
    DataType = DataType
    ILogger = FakeILogger

    def __init__(self, cuda: FakeCudaRuntime) -> None:
        self.cuda = cuda
        self.engines: list[FakeEngine] = []

    def Runtime(self, logger: Any) -> FakeRuntime:  # noqa: N802 - TensorRT's name
        return FakeRuntime(self, logger)

    @staticmethod
    def nptype(dtype: DataType) -> type:
        return np.dtype(dtype.value).type

    def Builder(self, logger: Any) -> Any:  # noqa: N802
        raise AssertionError("FakeTensorRt cannot build engines; seed the cache with fake_plan()")
