"""ONNX Runtime backend: CPU, or CUDA with IO binding of the preprocessor's device buffer."""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pipeline.config import ModelConfig
from pipeline.frame import OutputLayout, TensorBatch
from pipeline.infer.base import Backend, Queued, Submitted, parse_device, register_backend
from pipeline.infer.candidates import OUTPUT_NAME as CANDIDATES_OUTPUT
from pipeline.infer.candidates import CandidateGraphError, append_candidate_selection, rows_as_anchors
from pipeline.infer.model_spec import (
    ModelError,
    ModelSpec,
    batch_plan,
    load_onnx,
    pack_outputs,
    resolve_model,
    run_names,
    with_dynamic_batch,
)
from pipeline.gpu.device_buffer import DeviceView
from pipeline.infer.onnxruntime.fp16 import fp16_model_path
from pipeline.gpu.stream import CudaStream
from pipeline.infer.onnxruntime.gpu_sessions import (BatchSizeSession, priority_stream, stream_provider_options,
                                                  with_fixed_batch)

log = logging.getLogger(__name__)

ORT_DTYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(uint8)": np.dtype(np.uint8),
}


def all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects container/cgroup CPU pinning
    except AttributeError:
        return os.cpu_count() or 1


def _dims(shape: list[Any]) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else (d or "?") for d in shape) + "]"


def _preload_cuda_libraries() -> None:
    """Load CUDA/cuDNN from the nvidia-* wheels (the [gpu] extra) when they are not on the library
    path: without this the CUDA EP fails to load on hosts where only the wheels provide them."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # noqa: BLE001 - the libraries may be found the usual way anyway
        log.debug("onnxruntime.preload_dlls: %s", exc)


def padded_batch(count: int, max_batch: int) -> int:
    """The batch size `count` images run at on the GPU: powers of two up to 8, then multiples of
    max(8, max_batch / 4) up to max_batch (32: 1, 2, 4, 8, 16, 24, 32). A handful of shapes, each with
    its own session (_batch_session), with little padding: a batch of 17 runs as 24, not 32."""
    size = 1
    while size < min(count, 8):
        size *= 2
    if count > size:
        step = max(8, max_batch // 4)
        size = -(-count // step) * step
    return min(size, max_batch)


@register_backend
class OnnxRuntimeBackend(Backend):
    """One InferenceSession. device "cpu" uses CPUExecutionProvider; "gpu"/"gpu:N" uses CUDA.

    intra_op_threads: ORT's intra-op pool size (None: all cores this process may use).
    allow_spinning: let idle ORT threads spin; off by default because decode and preprocess
      threads share the cores and spinning steals their time.
    cache_dir: where fp16 conversions are kept (GPU with model.precision fp16 only).
    """

    type_key = "onnxruntime"

    def __init__(self, model: ModelConfig, max_batch: int, device: str = "cpu", *,
                 intra_op_threads: int | None = None, allow_spinning: bool = False,
                 cache_dir: Path | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._path = Path(model.path)
        self._device, self._device_id = parse_device(device)
        self._gpu_options = model.onnxruntime
        try:
            proto = load_onnx(self._path)
            spec = resolve_model(model, proto)
        except ModelError as exc:
            raise ValueError(str(exc)) from None
        self._model_spec = spec
        self._labels = list(spec.labels)
        self._run_names = run_names(spec)
        if self._device == "gpu" and spec.input.size_input is not None:
            raise ValueError(f"{self._path}: a model with a second input ({spec.input.size_input}) runs on device "
                             f"cpu only; export it without that input for the GPU")
        if self._device == "gpu" and len(self._run_names) > 1:
            raise ValueError(f"{self._path}: model.format end2end with several outputs ({', '.join(self._run_names)}) "
                             f"runs on device cpu only; export one [B, N, 6] output for the GPU")
        self._providers({})  # fails early, in one line, when the CUDA EP is missing
        load_path = self._path
        self._fp16_converted = self._device == "gpu" and model.precision == "fp16"
        if self._fp16_converted:
            load_path = fp16_model_path(self._path, cache_dir)
            proto = load_onnx(load_path)
        elif model.precision == "fp16":
            log.info("%s: precision fp16 on the CPU runs the fp32 model (CPU kernels are fp32)", self._path)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads if intra_op_threads else all_cores()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        options.log_severity_level = 3  # errors only: ORT's warnings are about its own internals
        self._output_layout = OutputLayout.ANCHORS
        self.batch_note, dynamic = batch_plan(spec, max_batch)  # checked on the fp32 file (CPU kernels)
        if dynamic is not None:
            proto = with_dynamic_batch(proto)
        source: str | bytes = str(load_path) if dynamic is None else proto.SerializeToString()
        self._graph: Any = None  # the onnx.ModelProto run, when the candidate graph was appended
        candidates = self._candidate_model(proto, model.max_candidates)
        if candidates is not None:
            self._graph, self._output_layout = candidates, OutputLayout.CANDIDATES
            self._run_names = [CANDIDATES_OUTPUT]
            source = candidates.SerializeToString()
        self._source, self._options = source, options
        self._session = self._new_session()
        if self._device == "gpu" and self._session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"{self._path}: CUDAExecutionProvider did not load (CUDA/cuDNN libraries "
                               f"missing?); session providers: {self._session.get_providers()}")
        self._check_signature(spec)
        self._max_batch = self._fixed_batch or max_batch
        self._batch_sessions: dict[int, BatchSizeSession] = {}  # GPU: one per padded batch size
        self._stream: CudaStream | None = None
        if self._device == "gpu":
            if self._gpu_options.priority_stream:
                self._stream = self._priority_stream()
            started = time.perf_counter()
            self.warm_up()
            graphs = sum(s.cuda_graph for s in self._batch_sessions.values())
            log.info("%s: warmed up batch sizes %s on the GPU in %.1f s (%d of them as CUDA graphs)",
                     self._path, self._gpu_batch_sizes(), time.perf_counter() - started, graphs)
        else:
            self._check_first_output()
        log.info("loaded %s: input %s %s %s, output %s %s, max batch %d, %s", self._path, self._input_name,
                 _dims(self._input_shape), self._input_dtype, self._output_name, _dims(self._output_shape),
                 self._max_batch, self._session.get_providers()[0])
        log.info("%s: %s", self._path, spec.describe(self.batch_note))

    # ------------------------------------------------------------------ load-time checks

    def _new_session(self, source: str | bytes | None = None, cuda_options: dict[str, str] | None = None) -> Any:
        providers = self._providers(cuda_options or {})
        try:
            return ort.InferenceSession(self._source if source is None else source, sess_options=self._options,
                                        providers=providers)
        except Exception as exc:  # ORT raises several types, with multi-line messages
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            # ORT says "system error number 13" for an unreadable file: say it in words
            first = re.sub(r"system error number (\d+)", lambda m: os.strerror(int(m.group(1))), first)
            raise ValueError(f"{self._path}: cannot load ONNX model: {first}") from None

    def _batch_session(self, batch: int) -> BatchSizeSession:
        """The GPU session that runs batches of exactly `batch` images (pipeline/infer/onnxruntime/gpu_sessions.py)."""
        session = self._batch_sessions.get(batch)
        if session is None:
            model = self._source if self._graph is None or self._fixed_batch else \
                with_fixed_batch(self._graph, batch)
            stream = stream_provider_options(self._stream) if self._stream is not None else {}
            session = BatchSizeSession(
                lambda data, extra: self._new_session(data, {**stream, **extra}), model, batch,
                input_name=self._input_name, output_name=self._output_name, item_shape=self.input_shape(1)[1:],
                input_dtype=self._input_dtype, device_id=self._device_id,
                cuda_graph=self._gpu_options.cuda_graph, where=str(self._path),
                stream=self._stream.handle if self._stream is not None else None,
                queue_ahead=self._gpu_options.queue_ahead)
            self._batch_sessions[batch] = session
        return session

    def _priority_stream(self) -> CudaStream | None:
        try:
            return priority_stream(self._device_id)
        except Exception as exc:  # noqa: BLE001 - cuda-python missing or refused: ORT's own stream
            log.warning("%s: inference runs on ONNX Runtime's own CUDA stream (no priority stream: %s)",
                        self._path, exc)
            return None

    def _candidate_model(self, proto: Any, max_candidates: int | None) -> Any:
        """The model (onnx.ModelProto) with on-device candidate selection (pipeline/infer/candidates.py),
        or None to decode the full output on the host: switched off, format end2end (its output is
        small already), or a model the graph does not fit. yolov5/yolox rows are turned into the
        yolov8 layout in the graph first (candidates.rows_as_anchors)."""
        if not max_candidates:
            return None
        spec = self._model_spec
        if spec.format not in ("yolov8", "yolov5", "yolox"):
            return None  # end2end outputs are already a few hundred rows
        try:
            if spec.format != "yolov8":  # rows [B, N, 5+C] -> anchors [B, 4+C, N], then the same selection
                proto = rows_as_anchors(proto, spec.format, spec.input.size, spec.strides, str(self._path))
            return append_candidate_selection(proto, max_candidates, str(self._path))
        except CandidateGraphError as exc:
            log.info("%s; the full model output is decoded on the host", exc)
            return None

    def _providers(self, cuda_options: dict[str, str]) -> list[Any]:
        if self._device == "cpu":
            return ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"device gpu needs onnxruntime-gpu (the [gpu] extra); this onnxruntime "
                               f"has {', '.join(available)}")
        _preload_cuda_libraries()
        options = {"device_id": str(self._device_id), **cuda_options}
        if self._gpu_options.prefer_nhwc:
            options["prefer_nhwc"] = "1"
        return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]

    def _check_signature(self, spec: ModelSpec) -> None:
        """The session's own view of the model (after any graph edits) against the resolved spec."""
        inputs = [i for i in self._session.get_inputs() if i.name != spec.input.size_input]
        inp = inputs[0]
        # the spec is read from the file as given; the fp16 conversion turns a float32 input into float16
        want = np.dtype(np.float16) if self._fp16_converted and spec.input.dtype == np.float32 else spec.input.dtype
        if len(inputs) != 1 or inp.name != spec.input.name or ORT_DTYPES.get(inp.type) != want:
            raise ValueError(f"{self._path}: the runtime sees inputs "
                             f"{', '.join(f'{i.name} {i.type}' for i in inputs)}; expected one {want} "
                             f"input {spec.input.name!r}")
        outputs = {o.name: o for o in self._session.get_outputs()}
        missing = [n for n in self._run_names if n not in outputs]
        if missing:
            raise ValueError(f"{self._path}: the runtime has no output {missing[0]!r}; outputs: {', '.join(outputs)}")
        out = outputs[self._run_names[0]]
        self._input_name = inp.name
        self._input_shape = list(inp.shape)
        self._input_dtype = want
        self._input_size = spec.input.size
        self._input_layout = spec.input.layout
        self._output_name = out.name
        self._output_shape = list(out.shape)
        batch = self._input_shape[0]
        self._fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    def _check_first_output(self) -> None:
        """One grey picture through the model at start-up (CPU): a model that fails on a plain picture,
        returns NaN for it, or whose output (dynamic dimensions known only now) its format cannot
        read fails here, in one line, instead of on every batch."""
        grey = np.full(self.input_shape(1), self._model_spec.input.pad_value, np.uint8)
        x = grey if self._input_dtype == np.uint8 else (grey * self._model_spec.input.scale).astype(self._input_dtype)
        try:
            out = self._run_chunk(x, 1)
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - ORT's messages are long
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{self._path}: the model failed on a test picture: {first}") from None
        if np.isnan(out).any():
            raise ValueError(f"{self._path}: the model outputs NaN on a plain grey picture "
                             f"(output {list(out.shape)}); check the export (fp16 overflow?)")
        problem = None if self._output_layout is OutputLayout.CANDIDATES else self._model_spec.output_problem(out)
        if problem:  # shapes left dynamic in the file are only known now
            raise ValueError(f"{self._path}: {problem}")

    # ------------------------------------------------------------------ contract

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]  # ORT frees the session with its last reference
        for session in self._batch_sessions.values():
            session.close_own_graph()
        self._batch_sessions = {}
        if self._stream is not None:  # after the sessions that run on it
            stream, self._stream = self._stream, None
            try:
                stream.close()
            except Exception as exc:  # noqa: BLE001 - closing goes on (a lost GPU, say)
                log.warning("%s: closing the priority stream: %s", self._path, exc)

    # ------------------------------------------------------------------ running

    def submit(self, batch: TensorBatch) -> Submitted:
        """Queue a device batch of at most max_batch images on a session that queues ahead (its own
        CUDA graph, gpu_sessions.py) and return before it has run; anything else runs now."""
        if self._session is not None and self._device == "gpu" and hasattr(batch.tensor, "__cuda_array_interface__"):
            chunks = self._chunks(batch)
            if len(chunks) == 1:
                view, count = chunks[0]
                session = self._batch_session(self._device_batch(count))
                if session.queues_ahead:
                    run = session.submit(view)
                    return Queued(lambda: self._result(batch, self._checked_output(run.wait(), count)))
        return super().submit(batch)

    def _run_chunk(self, chunk: Any, count: int) -> np.ndarray:
        if self._session is None:
            raise RuntimeError(f"{self._path}: backend is closed")
        if isinstance(chunk, DeviceView):
            out = self._batch_session(self._device_batch(count)).run(chunk)
        elif self._device == "gpu":  # host images for the GPU: uploaded into the batch size's buffer
            out = self._batch_session(self._device_batch(count)).run_host(chunk)
        else:
            if self._fixed_batch and count < self._fixed_batch:
                # fixed-batch models take exactly that many images: pad, then drop the padding's outputs
                pad = np.zeros((self._fixed_batch - count,) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            outs = self._session.run(self._run_names, self._model_spec.input.feeds(chunk))
            if self._output_layout is OutputLayout.CANDIDATES:
                out = outs[0]
            else:
                out = pack_outputs(self._model_spec, outs, count)
        return self._checked_output(out, count)

    def _checked_output(self, out: np.ndarray, count: int) -> np.ndarray:
        out = np.asarray(out[:count], dtype=np.float32)
        if out.ndim != 3:
            raise ValueError(f"{self._path}: model output is {list(out.shape)}; expected rank 3 "
                             f"({self._model_spec.format}, {self._output_layout.value} layout)")
        return out

    def _device_chunks(self, tensor: Any, count: int) -> list[tuple[Any, int]]:
        if self._device != "gpu":
            raise ValueError(f"{self._path}: a GPU input tensor needs the model on device gpu")
        return self._split_device_tensor(tensor, count, str(self._path), "the model wants",
                                         "model.precision decides the preprocessor's output type")

    def _device_batch(self, count: int) -> int:
        """The batch size a device chunk of `count` images runs at (the fixed batch, if any)."""
        if self._fixed_batch:
            return self._fixed_batch
        return padded_batch(count, self._max_batch)

    def _gpu_batch_sizes(self) -> list[int]:
        sizes = {self._device_batch(n) for n in range(1, self._max_batch + 1)}
        return sorted(sizes)

    def bind_to_thread(self) -> None:
        """Capture the CUDA graphs for the calling thread (pipeline/infer/onnxruntime/gpu_sessions.py)."""
        if self._device == "gpu" and self._gpu_options.cuda_graph:
            self.warm_up()

    def warm_up(self) -> None:
        """Create and run every batch size's session (at load), so shape planning, cuDNN tuning and
        CUDA graph capture happen before the first frame instead of stalling live cameras."""
        for batch in self._gpu_batch_sizes():
            self._batch_session(batch).warm_up()
