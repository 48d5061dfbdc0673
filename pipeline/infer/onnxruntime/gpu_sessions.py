"""ONNX Runtime on the GPU: one session per padded batch size, each optionally replayed as a CUDA graph.

One session per batch size, because the CUDA EP re-tunes its convolutions whenever a session's
input shape changes, also back to a shape it ran before: measured on the H200 with YOLOv8n fp16,
every call after a batch-size change took 1.2-1.7 s instead of 2-10 ms (docs/BENCHMARKS.md). A
session that only ever sees one shape tunes once, at warm-up. Each session gets the model with its
batch dimension fixed, so ONNX Runtime folds the shape arithmetic away.

CUDA graph (model.onnxruntime.cuda_graph): the session records its kernels once and then replays
them with one launch, instead of launching a few hundred kernels from the CPU per call (measured on
the H200: 0.9 ms of a 9.7 ms batch of 32; docs/BENCHMARKS.md). A replay reads and writes fixed
addresses, so each batch size owns its input and output buffers: the preprocessor's batch is copied
into the input buffer (device to device) and the candidates are copied out of the output buffer.
A model the CUDA EP cannot capture (a node on the CPU, an output whose size is only known at run
time) runs without a graph, with one log line saying why.

Two ONNX Runtime facts shape the rest:
  * the captured graph lives in the calling thread's context: a thread that did not capture would
    capture on its own third run;
  * capture is global: any CUDA call another thread makes meanwhile (NVDEC, DALI, a synchronize)
    fails, and invalidates the capture. Measured: capturing while cameras ran aborted the process.
So graphs are captured only in warm_up(), which the thread that will run the model calls before
any other stage touches the GPU (Backend.bind_to_thread; the daemon's infer thread does it before
the cameras start). A call from any other thread runs the plain way (run option gpu_graph_id -1),
which never captures.

Queue ahead (model.onnxruntime.queue_ahead, with cuda_graph and a stream of ours): ONNX Runtime's
replay synchronizes inside every run, so a batch can only be queued once the previous one is done
and the inference thread has the interpreter lock back. Instead the session's kernels are captured
by us (gpu/own_graph.py) from one run with ONNX Runtime's end-of-run synchronize off; `submit()`
queues the copy in, the graph and the copy of the candidates into page-locked memory, and returns
at once, so the inference thread queues batch N+1 before it waits for batch N (app/lookahead.py).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import numpy as np

from pipeline.gpu import device_buffer
from pipeline.gpu.buffers import PinnedHostArray
from pipeline.gpu.device_buffer import DeviceView
from pipeline.gpu.memory import device_to_host
from pipeline.gpu.stream import CudaStream
from pipeline.gpu.own_graph import CapturedGraph, TimedEvents
from pipeline.gpu.runtime import clear_last_errors, load_cuda_runtime

log = logging.getLogger(__name__)

# ONNX Runtime captures on a thread's third run of a session (two plain runs allocate first);
# the fourth replays, so a warm-up of four leaves the thread with a graph that has run.
WARM_UP_RUNS = 4

OUTPUT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}

# session factory: (model bytes, extra CUDA EP options) -> InferenceSession, raising ValueError
SessionFactory = Callable[[bytes, dict[str, str]], Any]
OWN_GRAPH_SLOTS = 2  # batches a session can have queued at once (app/lookahead.py keeps two)


def priority_stream(device_id: int) -> CudaStream:
    """A CUDA stream at the device's highest priority, given to ONNX Runtime as its compute stream
    (model.onnxruntime.priority_stream): the GPU's block scheduler then starts inference kernels
    ahead of queued decode-conversion and letterbox kernels, which have slack while the single
    inference thread is the stage everything waits for."""
    return CudaStream(load_cuda_runtime(), device_id, highest_priority=True)


def stream_provider_options(stream: CudaStream) -> dict[str, str]:
    """The CUDA EP options that make `stream` ONNX Runtime's compute stream."""
    return {"user_compute_stream": str(stream.handle)}


def with_fixed_batch(model: Any, batch: int) -> bytes:
    """`model` (onnx.ModelProto) serialized with its input batch dimension set to `batch`."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    return fixed.SerializeToString()


class BatchSizeSession:
    """One CUDA EP session that runs batches of exactly `batch` images of `input_shape[1:]`."""

    def __init__(self, new_session: SessionFactory, model: bytes, batch: int, *, input_name: str,
                 output_name: str, item_shape: tuple[int, ...], input_dtype: np.dtype, device_id: int,
                 cuda_graph: bool, where: str, stream: int | None = None, queue_ahead: bool = False) -> None:
        import onnxruntime as ort

        self.batch = batch
        self._input_name, self._output_name, self._device_id = input_name, output_name, device_id
        self._input_dtype = np.dtype(input_dtype)
        self._item_shape = item_shape
        self._stream = stream  # ONNX Runtime's compute stream when it is ours: copies go on it, unsynchronized
        self._ort = ort
        self._input: Any = None  # ORT-owned device buffer of `batch` images (padding, graph replay)
        self._output: Any = None  # graph mode: ORT-owned device buffer the replay writes
        self._graph_binding: Any = None
        self._graph_threads: set[int] = set()  # threads that captured this session's graph
        self._plain_run = ort.RunOptions()
        self._plain_run.add_run_config_entry("gpu_graph_id", "-1")  # neither capture nor replay
        self.session: Any = None
        self._new_session, self._model, self._where = new_session, model, where
        self._own_graph: CapturedGraph | None = None  # queue ahead: captured in warm_up()
        self._slots: list[_Slot] = []
        self._next_slot = 0
        self._queue_ahead = bool(cuda_graph and queue_ahead and stream is not None)
        if self._queue_ahead:
            self.session = self._own_graph_session()
        elif cuda_graph:
            self.session = self._graph_session()
        if self.session is None:
            self.session = new_session(model, {})

    @property
    def queues_ahead(self) -> bool:
        """Whether submit() queues batches without waiting (our own graph was captured)."""
        return self._own_graph is not None

    def _own_graph_session(self) -> Any:
        """A plain session (no ONNX Runtime graph) bound to fixed input and output buffers, to capture."""
        session = self._new_session(self._model, {})
        self._queue_ahead = self._bind_fixed_output(session)  # no fixed output: plain runs
        return session

    @property
    def cuda_graph(self) -> bool:
        """Whether the calling thread replays a captured graph (after its warm_up()); our own graph
        (queue ahead) replays from any thread."""
        if self._own_graph is not None:
            return True
        return self._graph_binding is not None and threading.get_ident() in self._graph_threads

    def _graph_session(self) -> Any:
        where = self._where
        try:
            session = self._new_session(self._model, {"enable_cuda_graph": "1"})
        except ValueError as exc:
            log.info("%s: batch %d runs without a CUDA graph: %s", where, self.batch, exc)
            return None
        return session if self._bind_fixed_output(session) else None

    def _bind_fixed_output(self, session: Any) -> bool:
        """Bind the input buffer and an output buffer of the session's fixed output shape (what a
        graph replays into); False (logged) when the output has no fixed size or type."""
        where = self._where
        out = session.get_outputs()[0]
        shape = [d if isinstance(d, int) and d > 0 else None for d in out.shape]
        shape[0] = self.batch
        if None in shape:
            log.info("%s: batch %d runs without a CUDA graph: output %r is %s, not a fixed size",
                     where, self.batch, out.name, list(out.shape))
            return False
        dtype = OUTPUT_DTYPES.get(out.type)
        if dtype is None:
            log.info("%s: batch %d runs without a CUDA graph: output %r has type %s", where, self.batch,
                     out.name, out.type)
            return False
        self._output = self._ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cuda", self._device_id)
        self._output_shape, self._output_dtype = tuple(shape), np.dtype(dtype)
        binding = session.io_binding()
        binding.bind_ortvalue_input(self._input_name, self.input_buffer)
        binding.bind_ortvalue_output(self._output_name, self._output)
        self._graph_binding = binding
        return True

    @property
    def input_buffer(self) -> Any:
        """The session's own input buffer (an OrtValue of `batch` images), made on first use."""
        if self._input is None:
            shape = [self.batch, *self._item_shape]
            self._input = self._ort.OrtValue.ortvalue_from_shape_and_type(shape, self._input_dtype.type,
                                                                          "cuda", self._device_id)
        return self._input

    def warm_up(self) -> None:
        """Run a few times on the input buffer: tunes the convolutions and, on a graph session,
        captures the graph for the calling thread. No other thread may use CUDA meanwhile."""
        buffer = self.input_buffer
        view = DeviceView(buffer.data_ptr(), (self.batch, *self._item_shape), self._input_dtype, buffer)
        refused = False  # a capture was refused here: its error may still be pending (below)
        if self._queue_ahead and self._graph_binding is not None:
            if self._own_graph is None:
                self._capture_own_graph()
                refused = self._own_graph is None
            if self._own_graph is not None:
                self.submit(view).wait()
                return
        if self._graph_binding is not None and not self._queue_ahead:
            thread = threading.get_ident()
            try:
                for _ in range(WARM_UP_RUNS):
                    self.session.run_with_iobinding(self._graph_binding)
                self._output.numpy()
                self._graph_threads.add(thread)
                return
            except Exception as exc:  # noqa: BLE001 - ORT refused the capture: run the plain way
                line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.info("%s: batch %d runs without a CUDA graph: capture failed: %s", self._where,
                         self.batch, line)
                self._graph_binding = self._output = None
                self._graph_threads.clear()
                clear_last_errors()  # the refused capture's error must not fail the next plain run
                self.session = self._new_session(self._model, {})
                refused = True
        try:
            self.run(view)
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is the refused capture's error
            if not refused or "capturing" not in str(exc):
                raise
            # A CUDA runtime we could not reach kept the capture's error, and the first kernel that
            # checks reports it (and so clears it): the run after that is the real one.
            log.info("%s: batch %d: the refused capture's error came back once; running again", self._where,
                     self.batch)
            self.run(view)

    def _capture_own_graph(self) -> None:
        """Plain runs first (they tune the kernels and fill ONNX Runtime's memory arena: a capture
        may not allocate), then one run captured on our stream. On failure: plain runs, logged."""
        assert self._stream is not None
        nosync = self._ort.RunOptions()
        nosync.add_run_config_entry("disable_synchronize_execution_providers", "1")
        try:
            for _ in range(WARM_UP_RUNS):
                self.session.run_with_iobinding(self._graph_binding)
            self._own_graph = CapturedGraph(self._stream, lambda: self.session.run_with_iobinding(self._graph_binding, nosync))
            row = (1, *self._output_shape[1:])
            self._slots = [_Slot(PinnedHostArray(load_cuda_runtime(), (self.batch, *self._output_shape[1:]),
                                                 self._output_dtype),
                                 TimedEvents(), int(np.prod(row)) * self._output_dtype.itemsize)
                           for _ in range(OWN_GRAPH_SLOTS)]
        except Exception as exc:  # noqa: BLE001 - a model or runtime that cannot be captured: plain runs
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.info("%s: batch %d is not queued ahead (runs one at a time): capture failed: %s", self._where,
                     self.batch, line)
            self.close_own_graph()
            self._queue_ahead = False
            self._graph_binding = self._output = None
            self.session = self._new_session(self._model, {})  # a fresh one: the failed capture ran in this one

    def submit(self, view: DeviceView) -> "QueuedRun":
        """Queue the images of `view` (at most `batch`, on the GPU) and return at once; the result
        is `.wait()`. Only on a session that queues_ahead; two may be queued (OWN_GRAPH_SLOTS)."""
        assert self._own_graph is not None and self._stream is not None
        slot = self._slots[self._next_slot]
        if slot.queued is not None:  # the caller has not waited for the run that used this slot
            slot.queued.wait()
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        count, stream, buffer = view.shape[0], self._stream, self.input_buffer
        slot.events.record(0, stream)
        if buffer.data_ptr() != view.ptr:  # queued behind the batch before: that graph has read the buffer by then
            device_buffer.copy_device_to_device(buffer.data_ptr(), view.ptr, view.nbytes, stream)
        self._own_graph.launch(stream)
        slot.host.copy_from_device_async(self._output.data_ptr(), count * slot.row_nbytes, stream)
        slot.events.record(1, stream)
        slot.queued = QueuedRun(slot, count, view)
        return slot.queued

    def close_own_graph(self) -> None:
        """Free the graph, its host slots and events, once the GPU is done with what was queued."""
        for slot in self._slots:
            if slot.queued is not None:  # abandoned at shutdown: its copy must land before the memory goes
                try:
                    slot.queued.wait()
                except Exception as exc:  # noqa: BLE001 - closing goes on (a lost GPU, say)
                    log.warning("%s: batch %d: waiting for a queued run at close: %s", self._where, self.batch, exc)
        if self._own_graph is not None:
            self._own_graph.close()
            self._own_graph = None
        for slot in self._slots:
            slot.host.close()
            slot.events.close()
        self._slots = []

    def run_host(self, images: np.ndarray) -> np.ndarray:
        """run() for a host array of at most `batch` images: uploaded into the input buffer first."""
        count = len(images)
        if count < self.batch:
            pad = np.zeros((self.batch - count,) + images.shape[1:], dtype=images.dtype)
            images = np.concatenate([images, pad])
        buffer = self.input_buffer
        buffer.update_inplace(np.ascontiguousarray(images, dtype=self._input_dtype))
        return self.run(DeviceView(buffer.data_ptr(), (self.batch, *self._item_shape), self._input_dtype, buffer))

    def run(self, view: DeviceView) -> np.ndarray:
        """Outputs for the images of `view` (at most `batch`), as a host array of `batch` rows:
        the rows past the view's images are padding for the caller to drop."""
        if self._own_graph is not None:
            return self.submit(view).wait()
        count = view.shape[0]
        graph = self._graph_binding is not None
        if graph or count < self.batch:
            buffer = self.input_buffer
            if buffer.data_ptr() != view.ptr:
                # the tail past `count` is whatever the buffer held: its outputs are dropped, and
                # images in a batch do not influence each other
                device_buffer.copy_device_to_device(buffer.data_ptr(), view.ptr, view.nbytes, self._stream)
                view = DeviceView(buffer.data_ptr(), (self.batch, *self._item_shape), view.dtype, buffer)
        if graph:
            if threading.get_ident() in self._graph_threads:
                self.session.run_with_iobinding(self._graph_binding)
            else:  # a thread without a graph of its own must not capture one now (see the top)
                self.session.run_with_iobinding(self._graph_binding, self._plain_run)
            # The replay has finished (ONNX Runtime synchronizes after it): copy the rows of real
            # images, keeping the interpreter lock (~0.1 ms): letting go of it for the copy cost a
            # 3.5 ms wait to take it back with 135 cameras (e2e_timeline on the H200, issue 22).
            return device_to_host(self._output.data_ptr(), (count, *self._output_shape[1:]), self._output_dtype,
                                  keep_lock=True)
        binding = self.session.io_binding()
        binding.bind_input(self._input_name, device_type="cuda", device_id=self._device_id,
                           element_type=view.dtype.type, shape=list(view.shape), buffer_ptr=view.ptr)
        # Candidates are ~24 KB per image; a full YOLOv8n@640 output would be 2.8 MB (candidates.py)
        binding.bind_output(self._output_name, device_type="cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class _Slot:
    """One queued batch's page-locked copy of the candidates, and its events."""

    def __init__(self, host: PinnedHostArray, events: TimedEvents, row_nbytes: int) -> None:
        self.host, self.events, self.row_nbytes = host, events, row_nbytes
        self.queued: QueuedRun | None = None  # the run that writes into `host`, until waited for


class QueuedRun:
    """A batch queued by BatchSizeSession.submit(); `wait()` (once or more) gives its output rows.
    Holds the input view (the preprocessor's pooled buffer) until the copy out of it has run."""

    def __init__(self, slot: _Slot, count: int, view: DeviceView) -> None:
        self._slot, self._count, self._view = slot, count, view
        self._rows: np.ndarray | None = None
        self.gpu_seconds = 0.0

    def wait(self) -> np.ndarray:
        if self._rows is None:
            slot = self._slot
            slot.events.wait()  # lets go of the interpreter lock
            self.gpu_seconds = slot.events.gpu_seconds()
            self._rows = slot.host.array[:self._count].copy()  # the slot is reused two batches on
            slot.queued = None
            self._view = None  # type: ignore[assignment]
        return self._rows
