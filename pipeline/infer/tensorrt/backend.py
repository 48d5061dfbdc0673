"""TensorRT backend (TensorRT 10 Python API, cuda-python for memory and streams).

Start-up: the engine comes from the engine cache or is built from the ONNX model
(trt_engine.prepare_engine; `pipeline build-engine` does the same ahead of time).

Execution: one execution context per optimization profile (model.tensorrt.contexts, at least 2),
each with its own CUDA stream and its own device buffers allocated once at the profile's max
batch. Tensors are bound by name (set_input_shape, set_tensor_address) and run with
execute_async_v3. A batch's chunks go to different contexts before any is waited for, and
`submit` returns before the GPU finishes, so consecutive batches overlap on the GPU. A GPU input
(__cuda_array_interface__, e.g. DALI's output) is bound by its pointer: no copy at all; a host
input is staged through pinned memory. Outputs are copied to the host: with model.max_candidates
set, the engine is built from the model with candidate selection appended (trt_candidates.py), so
that is [B, 6, K] per batch (OutputLayout.CANDIDATES) instead of the full [B, 4+C, N].

Nothing here executes on the machines this was written on (no NVIDIA driver, and no TensorRT
that runs on Hopper); see docs/tensorrt.md for exactly what was run where.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import ModelConfig
from pipeline.frame import CANDIDATE_ROWS, InferenceResult, OutputLayout, TensorBatch
from pipeline.infer.model_spec import ModelError, tensorrt_spec
from pipeline.infer.base import Backend, parse_device, register_backend
from pipeline.gpu.device_buffer import DeviceView
from pipeline.gpu.buffers import DeviceBuffer, PinnedHostArray
from pipeline.gpu.stream import CudaStream
from pipeline.infer.tensorrt.cuda import (copy_to_device_async, copy_to_host_async, gpu_identity, load_cuda_runtime,
                                          set_device)
from pipeline.infer.tensorrt.engine import PreparedEngine, output_summary, prepare_engine
from pipeline.infer.tensorrt.progress import PhaseLines, python_logger

log = logging.getLogger(__name__)

MISSING_TENSORRT = ("model.backend: tensorrt needs the [tensorrt] extra (pip install 'pipeline[tensorrt]') "
                    "and an NVIDIA GPU; use backend: onnxruntime otherwise")


def load_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise RuntimeError(MISSING_TENSORRT) from None
    return tensorrt


@dataclass(eq=False)
class _ContextSlot:
    """One execution context with its stream, profile and buffers (all sized for max batch)."""

    index: int
    context: Any
    stream: CudaStream
    input_device: DeviceBuffer
    input_pinned: PinnedHostArray  # host tensors are staged here so the upload is asynchronous
    output_devices: dict[str, DeviceBuffer]
    output_pinned: PinnedHostArray  # the first output (the detections), copied back every run


@dataclass(eq=False)
class _Job:
    """One chunk enqueued on a context; `output` is filled when its stream has been waited for."""

    slot: _ContextSlot
    count: int
    output_shape: tuple[int, ...]
    keepalive: Any  # the caller's device buffer, alive until the GPU is done reading it
    output: np.ndarray | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class PendingInference:
    """A submitted batch. `result()` waits for its chunks and returns the InferenceResult."""

    backend: "TensorRtBackend"
    batch: TensorBatch
    jobs: list[_Job] = field(default_factory=list)

    def result(self) -> InferenceResult:
        outputs = [self.backend._collect(job) for job in self.jobs]
        output = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=0)
        return InferenceResult(frames=self.batch.frames, transforms=self.batch.transforms, output=output,
                               formed_at=self.batch.formed_at, layout=self.backend.output_layout)


@register_backend
class TensorRtBackend(Backend):
    """model.backend: tensorrt. `device`: "gpu"/"gpu:N" (GPU tensors from the preprocessor) or "cpu"
    (host tensors from a CPU preprocessor; the engine still runs on GPU 0).

    contexts: execution contexts in flight (default model.tensorrt.contexts).
    cache_dir: engine cache when model.engine_cache_dir is unset (default: $STATE_DIRECTORY/engines,
      else ~/.cache/pipeline/engines).
    progress: where build progress lines go (default: the log).
    trt_module, cuda_runtime: the tensorrt module and cuda-python runtime; None imports the real
      ones. Tests pass the fakes from tests/support/mock_tensorrt.py.
    """

    type_key = "tensorrt"

    def __init__(self, model: ModelConfig, max_batch: int, device: str = "gpu", *, contexts: int | None = None,
                 cache_dir: Path | None = None, progress: PhaseLines | None = None, trt_module: Any = None,
                 cuda_runtime: Any = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._closed = True  # until fully built, so close() after a failed start frees only what exists
        self._slots: list[_ContextSlot] = []
        self._path = Path(model.path)
        try:
            self._model_spec = tensorrt_spec(model)
        except ModelError as exc:
            raise ValueError(str(exc)) from None
        # labels from the model's metadata and a static input size count from here on (engine builds too)
        model = model.model_copy(update={"labels": list(self._model_spec.labels),
                                         "input_size": self._model_spec.input.size})
        self._labels = list(model.labels)
        self._input_size = model.input_size
        trt = trt_module if trt_module is not None else load_tensorrt()
        rt = cuda_runtime if cuda_runtime is not None else load_cuda_runtime()
        self._trt, self._rt = trt, rt
        _kind, self._device_id = parse_device(device)  # "cpu": host tensors in; the engine is on GPU 0
        if (contexts or model.tensorrt.contexts) < 1:
            raise ValueError("model.tensorrt.contexts must be >= 1")

        set_device(rt, self._device_id)
        gpu = gpu_identity(rt, self._device_id)
        self._logger = python_logger(trt)
        common = dict(cache_dir=cache_dir, contexts=contexts, progress=progress, logger=self._logger,
                      device_upload=lambda nbytes: DeviceBuffer(rt, nbytes), device_id=self._device_id)
        prepared = prepare_engine(trt, model, max_batch, gpu, **common)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(prepared.plan)
        if self._engine is None and not prepared.built:
            # a cached plan this runtime refuses (checksum fine, but e.g. another TensorRT build): rebuild once
            log.warning("%s: cached engine %s did not deserialize (%s); rebuilding", self._path,
                        prepared.engine_path, self._logger.last_error or "no reason given")
            prepared = prepare_engine(trt, model, max_batch, gpu, force=True, **common)
            self._engine = self._runtime.deserialize_cuda_engine(prepared.plan)
        if self._engine is None:
            raise RuntimeError(f"{self._path}: TensorRT cannot deserialize the engine it just built: "
                               f"{self._logger.last_error or 'no reason given'}")
        self.prepared: PreparedEngine = prepared
        self._output_layout = prepared.layout
        self._lock = threading.Lock()
        self._free: deque[_ContextSlot] = deque()
        self._in_flight: deque[_Job] = deque()
        self._closed = False
        try:
            self._bind_io_names()
            for index in range(self._engine.num_optimization_profiles):
                self._slots.append(self._make_slot(index))
        except BaseException:
            self.close()
            raise
        self._free.extend(self._slots)
        log.info("loaded TensorRT engine %s: input %s %s, batch %d..%d, %s, %d context(s) on %s (sm %s), %s",
                 prepared.engine_path, self._input_name, self._input_dtype, self._min_batch, self._max_batch,
                 output_summary(prepared.spec), len(self._slots), gpu.name, gpu.compute_capability,
                 "built now" if prepared.built else "from cache")

    # ------------------------------------------------------------------ set-up

    def _bind_io_names(self) -> None:
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) != trt.TensorIOMode.INPUT]
        if len(inputs) != 1 or not outputs:
            raise ValueError(f"{self._path}: engine has inputs {inputs} and outputs {outputs}; expected one "
                             f"image input and a detections output")
        self._input_name = inputs[0]
        self._output_names = outputs
        self._input_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input_name)))
        self._output_dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in outputs}
        lo, _opt, hi = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(self._input_name, 0))
        self._min_batch, self._max_batch = lo[0], hi[0]

    def _make_slot(self, index: int) -> _ContextSlot:
        rt = self._rt
        context = self._engine.create_execution_context()
        if context is None:
            raise RuntimeError(f"{self._path}: cannot create execution context {index} (GPU memory?): "
                               f"{self._logger.last_error}")
        made: list[Any] = []  # freed again if a later step fails
        try:
            stream = CudaStream(rt)
            made.append(stream)
            # every context owns a profile of its own, so two contexts never share one while in flight
            context.set_optimization_profile_async(index, stream.handle)
            stream.synchronize()
            max_input = (self._max_batch, 3, self._input_size, self._input_size)
            if not context.set_input_shape(self._input_name, max_input):
                raise RuntimeError(f"{self._path}: engine refuses input shape {list(max_input)}")
            outputs: dict[str, DeviceBuffer] = {}
            shapes: dict[str, tuple[int, ...]] = {}
            for name in self._output_names:
                shape = tuple(int(d) for d in context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise ValueError(f"{self._path}: output {name!r} has data-dependent shape {list(shape)}; "
                                     f"only static output shapes are supported")
                shapes[name] = shape
                outputs[name] = DeviceBuffer(rt, int(np.prod(shape)) * self._output_dtypes[name].itemsize)
                made.append(outputs[name])
                context.set_tensor_address(name, outputs[name].ptr)  # fixed for the context's lifetime
            primary = self._output_names[0]
            out_shape = shapes[primary]
            if len(out_shape) != 3 or out_shape[1] != self.output_rows:
                raise ValueError(f"{self._path}: engine output {primary!r} is {list(out_shape)}; expected "
                                 f"{self._expected_output('B')}")
            input_bytes = int(np.prod(max_input)) * self._input_dtype.itemsize
            input_device = DeviceBuffer(rt, input_bytes)
            made.append(input_device)
            input_pinned = PinnedHostArray(rt, max_input, self._input_dtype)
            made.append(input_pinned)
            output_pinned = PinnedHostArray(rt, out_shape, self._output_dtypes[primary])
            made.append(output_pinned)
        except BaseException:
            for thing in reversed(made):
                try:
                    thing.destroy() if isinstance(thing, CudaStream) else thing.free()
                except Exception:  # noqa: BLE001 - the original error matters more
                    log.debug("cleanup after a failed context set-up failed", exc_info=True)
            raise
        return _ContextSlot(index, context, stream, input_device, input_pinned, outputs, output_pinned)

    # ------------------------------------------------------------------ contract

    @property
    def contexts(self) -> int:
        return len(self._slots)

    def infer(self, batch: TensorBatch) -> InferenceResult:
        return self.submit(batch).result()

    def submit(self, batch: TensorBatch) -> PendingInference:
        """Enqueue every chunk of `batch` and return without waiting for the GPU."""
        chunks = self._chunks(batch)
        pending = PendingInference(self, batch)
        for chunk, n in chunks:
            pending.jobs.append(self._enqueue(chunk, n))
        return pending

    def _device_chunks(self, tensor: Any, count: int) -> list[tuple[Any, int]]:
        # chunk offsets are multiples of 3*S*S*itemsize, a multiple of 256 bytes for S % 32 == 0:
        # every chunk pointer keeps the alignment TensorRT wants for input addresses
        return self._split_device_tensor(tensor, count, str(self._path), "the engine wants",
                                         "create the preprocessor with the backend's input_dtype")

    def _run_chunk(self, chunk: Any, count: int) -> np.ndarray:
        return self._collect(self._enqueue(chunk, count))

    # ------------------------------------------------------------------ running

    def _enqueue(self, chunk: Any, count: int) -> _Job:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._path}: backend is closed")
            slot = self._take_slot()
            try:
                job = self._launch(slot, chunk, count)
            except BaseException:
                self._free.append(slot)
                raise
            self._in_flight.append(job)
            return job

    def _take_slot(self) -> _ContextSlot:
        """A free context, or the one of the oldest job in flight once that job is finished."""
        if self._free:
            return self._free.popleft()
        oldest = self._in_flight.popleft()
        self._finish(oldest)
        return self._free.popleft()

    def _launch(self, slot: _ContextSlot, chunk: Any, count: int) -> _Job:
        rt, ctx, s = self._rt, slot.context, self._input_size
        shape = (count, 3, s, s)
        if not ctx.set_input_shape(self._input_name, shape):
            raise ValueError(f"{self._path}: engine refuses input shape {list(shape)} (profile batch "
                             f"{self._min_batch}..{self._max_batch})")
        if isinstance(chunk, DeviceView):
            address, keepalive = chunk.ptr, chunk.owner  # bound in place: the GPU reads the caller's buffer
        else:
            staged = slot.input_pinned.array[:count]
            np.copyto(staged, chunk)
            copy_to_device_async(rt, slot.input_device.ptr, staged, staged.nbytes, slot.stream)
            address, keepalive = slot.input_device.ptr, None
        ctx.set_tensor_address(self._input_name, address)
        if not ctx.execute_async_v3(slot.stream.handle):
            raise RuntimeError(f"{self._path}: execute_async_v3 failed on context {slot.index}: "
                               f"{self._logger.last_error or 'no reason given'}")
        primary = self._output_names[0]
        out_shape = tuple(int(d) for d in ctx.get_tensor_shape(primary))
        nbytes = int(np.prod(out_shape)) * self._output_dtypes[primary].itemsize
        copy_to_host_async(rt, slot.output_pinned.array, slot.output_devices[primary].ptr, nbytes, slot.stream)
        return _Job(slot, count, out_shape, keepalive)

    def _finish(self, job: _Job) -> None:
        """Wait for the job's stream, copy its output out of the pinned buffer, free its context.
        Called with the lock held."""
        try:
            job.slot.stream.synchronize()
            n = int(np.prod(job.output_shape))
            job.output = np.array(job.slot.output_pinned.array.reshape(-1)[:n].reshape(job.output_shape),
                                  dtype=np.float32)
        except BaseException as exc:  # noqa: BLE001 - reported to whoever collects the job
            job.error = exc
        finally:
            job.keepalive = None
            self._free.append(job.slot)

    def _collect(self, job: _Job) -> np.ndarray:
        with self._lock:
            if job.output is None and job.error is None:
                self._in_flight.remove(job)
                self._finish(job)
        if job.error is not None:
            raise RuntimeError(f"{self._path}: inference failed: {job.error}") from job.error
        assert job.output is not None
        if job.output.shape[0] != job.count or job.output.shape[1] != self.output_rows:
            raise ValueError(f"{self._path}: engine output is {list(job.output.shape)}; expected "
                             f"{self._expected_output(job.count)}")
        return job.output

    def _expected_output(self, batch: int | str) -> str:
        if self._output_layout is OutputLayout.CANDIDATES:
            k = self.prepared.spec.max_candidates
            return f"[{batch}, {CANDIDATE_ROWS}, K] (candidates, model.max_candidates {k})"
        return f"[{batch}, {4 + len(self._labels)}, N] for {len(self._labels)} labels"

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Wait for work in flight, then free contexts, buffers, streams, engine. Safe to call twice."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            while self._in_flight:
                self._finish(self._in_flight.popleft())
            for slot in self._slots:
                for free in (slot.stream.synchronize, slot.input_device.free, slot.input_pinned.free,
                             *(b.free for b in slot.output_devices.values()), slot.output_pinned.free,
                             slot.stream.destroy):
                    try:
                        free()
                    except Exception:  # noqa: BLE001 - free everything else even if one call fails
                        log.warning("%s: cleanup step failed", self._path, exc_info=True)
                slot.context = None
            self._slots.clear()
            self._free.clear()
            self._engine = None
            self._runtime = None
            self._closed = True
