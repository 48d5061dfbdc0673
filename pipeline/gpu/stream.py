"""The one CUDA stream wrapper: TensorRT's execution contexts, ONNX Runtime's compute stream
(model.onnxruntime.priority_stream), NVDEC's conversion copies and the fused letterbox all use it.

Takes the runtime module as an argument (gpu/runtime.py: load_cuda_runtime()), so the TensorRT
mock (tests/support/mock_tensorrt.py) can stand in for it.
"""
from __future__ import annotations

from typing import Any

from pipeline.gpu.runtime import check


class CudaStream:
    """A non-blocking stream (no implicit sync with the legacy default stream DALI or ORT may use).

    device_id: make that GPU current first (the stream belongs to the current device).
    highest_priority: the device's highest stream priority: the GPU's block scheduler then starts
    this stream's kernels ahead of queued ones of other streams (used for inference, the stage
    everything waits for, ahead of decode-conversion and letterbox kernels that have slack)."""

    def __init__(self, runtime: Any, device_id: int | None = None, highest_priority: bool = False) -> None:
        self._rt = runtime
        if device_id is not None:
            check(runtime.cudaSetDevice(device_id), f"cudaSetDevice({device_id})", runtime)
        flags = getattr(runtime, "cudaStreamNonBlocking", 1)
        self.priority: int | None = None
        if highest_priority:
            _lowest, highest = check(runtime.cudaDeviceGetStreamPriorityRange(),
                                     "cudaDeviceGetStreamPriorityRange", runtime)
            self._stream = check(runtime.cudaStreamCreateWithPriority(flags, highest),
                                 "cudaStreamCreateWithPriority", runtime)
            self.priority = int(highest)
        else:
            self._stream = check(runtime.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags", runtime)

    @property
    def handle(self) -> int:
        """The cudaStream_t as an integer (0 once closed)."""
        return int(self._stream) if self._stream is not None else 0

    def synchronize(self) -> None:
        check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize", self._rt)

    def close(self) -> None:
        """Destroy the stream. Safe to call twice."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            check(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy", self._rt)

    destroy = close  # the TensorRT samples' name

    def __enter__(self) -> "CudaStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
