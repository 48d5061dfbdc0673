"""CUDA graphs the daemon captures itself, launched without waiting, and the timing events that go
with them (issue 22; their page-locked output copies: gpu/buffers.py PinnedHostArray).

ONNX Runtime's own graph replay synchronizes inside every run, so the next batch can only be queued
once the inference thread has the interpreter lock back, and the GPU idles meanwhile: 2-4 ms a batch
with 135 cameras. Captured by us instead (the session's kernels recorded from one run on our own
stream, with ONNX Runtime's end-of-run synchronize switched off), a graph is one launch that
returns at once: the inference thread queues batch N+1 behind batch N and only then waits for N
(scripts/gpu_lab/ort_capture_probe.py on the H200: same output to the bit; with a 2 or 4 ms pause
per batch on the host, 4,700 images/s launched two deep against 3,630 and 2,955 replayed by
ONNX Runtime).

Capture uses CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: only the capturing thread may not make calls
that are unsafe during a capture; decode workers and the batch thread go on using the GPU.
Launches and event records keep the interpreter lock (gpu/lock_held.py); waits let go of it.
"""
from __future__ import annotations

import ctypes
from typing import Any, Callable

from pipeline.gpu.lock_held import LockHeldDriver
from pipeline.gpu.runtime import CudaError, check, clear_last_errors, load_cuda_runtime


def _driver() -> Any:
    from cuda.bindings import driver

    return driver


def _handle(obj: Any) -> int:
    """A cuda-python handle (CUgraphExec, cudaEvent_t) as the integer the driver API takes."""
    try:
        return int(obj)
    except TypeError:  # a cuda-python without __int__: read the handle where getPtr() says it is
        return int(ctypes.c_void_p.from_address(obj.getPtr()).value or 0)


class CapturedGraph:
    """The CUDA work `record()` queues on `stream` (from this thread), captured once and instantiated;
    `launch(stream)` queues it again. CudaError when the capture or the instantiation fails (the
    work made a call a capture forbids, e.g. a synchronize)."""

    def __init__(self, stream: int, record: Callable[[], None]) -> None:
        cu = _driver()
        self._cu = cu
        cu_stream = cu.CUstream(stream)
        check(cu.cuStreamBeginCapture(cu_stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
              "cuStreamBeginCapture")
        try:
            record()
        except BaseException:
            _end_failed_capture(cu, cu_stream)
            raise
        graph = check(cu.cuStreamEndCapture(cu_stream), "cuStreamEndCapture")
        try:
            self.nodes = int(check(cu.cuGraphGetNodes(graph, 0), "cuGraphGetNodes")[1])
            self._exec = check(cu.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
        finally:
            cu.cuGraphDestroy(graph)
        self.handle = _handle(self._exec)

    def launch(self, stream: int) -> None:
        driver = LockHeldDriver.shared()
        if driver is not None and driver.launch_graph(self.handle, stream):
            return
        check(self._cu.cuGraphLaunch(self._exec, self._cu.CUstream(stream)), "cuGraphLaunch")

    def close(self) -> None:
        if self._exec is not None:
            graph_exec, self._exec = self._exec, None
            self._cu.cuGraphExecDestroy(graph_exec)


def _end_failed_capture(cu: Any, cu_stream: Any) -> None:
    """Leave the stream and the thread as before the capture: end it (an invalidated capture must still
    be ended), and clear the last error of every CUDA runtime in the process. ONNX Runtime reads its
    own runtime's after its next kernel: on the H200 a model whose Concat cannot be captured then
    failed the next plain run, even in a fresh session, with the capture's "operation not permitted
    when stream is capturing" (clearing cuda-python's runtime alone did not help: ONNX Runtime's
    provider has its own libcudart)."""
    err, graph = cu.cuStreamEndCapture(cu_stream)
    if int(err) == 0 and graph is not None:
        cu.cuGraphDestroy(graph)
    clear_last_errors()
    status = check(cu.cuStreamIsCapturing(cu_stream), "cuStreamIsCapturing")
    if int(status) != int(cu.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_NONE):
        raise CudaError(f"the stream is still capturing after the failed capture was ended ({status})")


class TimedEvents:
    """Two CUDA events around queued work: `wait()` waits for the second (letting go of the
    interpreter lock), `gpu_seconds()` is the time between them."""

    def __init__(self) -> None:
        rt = load_cuda_runtime()
        self._rt = rt
        self._events = [check(rt.cudaEventCreate(), "cudaEventCreate", rt) for _ in range(2)]
        self._handles = [_handle(e) for e in self._events]

    def record(self, which: int, stream: int) -> None:
        driver = LockHeldDriver.shared()
        if driver is not None and driver.record_event(self._handles[which], stream):
            return
        check(self._rt.cudaEventRecord(self._events[which], stream), "cudaEventRecord", self._rt)

    def wait(self) -> None:
        check(self._rt.cudaEventSynchronize(self._events[1]), "cudaEventSynchronize", self._rt)

    def gpu_seconds(self) -> float:
        return float(check(self._rt.cudaEventElapsedTime(*self._events), "cudaEventElapsedTime", self._rt)) / 1000.0

    def close(self) -> None:
        for event in self._events:
            self._rt.cudaEventDestroy(event)
        self._events = []
