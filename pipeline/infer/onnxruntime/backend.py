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
from pipeline.frame import OutputLayout
from pipeline.infer.base import Backend, parse_device, register_backend
from pipeline.infer.candidates import load_with_candidates
from pipeline.gpu.device_buffer import DeviceView
from pipeline.infer.onnxruntime.fp16 import fp16_model_path
from pipeline.infer.onnxruntime.gpu_sessions import BatchSizeSession, PriorityStream, with_fixed_batch

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
        self._labels = list(model.labels)
        self._device, self._device_id = parse_device(device)
        self._gpu_options = model.onnxruntime
        if not self._path.is_file():
            raise ValueError(f"{self._path}: no such model file")
        self._providers({})  # fails early, in one line, when the CUDA EP is missing
        load_path = self._path
        if self._device == "gpu" and model.precision == "fp16":
            load_path = fp16_model_path(self._path, cache_dir)
        elif model.precision == "fp16":
            log.info("%s: precision fp16 on the CPU runs the fp32 model (CPU kernels are fp32)", self._path)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads if intra_op_threads else all_cores()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        options.log_severity_level = 3  # errors only: ORT's warnings are about its own internals
        self._output_layout = OutputLayout.ANCHORS
        source: str | bytes = str(load_path)
        self._graph: Any = None  # the onnx.ModelProto run, when the onnx package could read it
        candidates = self._candidate_model(load_path, model.max_candidates)
        if candidates is not None:
            self._graph, self._output_layout = candidates, OutputLayout.CANDIDATES
            source = candidates.SerializeToString()
        self._source, self._options = source, options
        self._session = self._new_session()
        if self._device == "gpu" and self._session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"{self._path}: CUDAExecutionProvider did not load (CUDA/cuDNN libraries "
                               f"missing?); session providers: {self._session.get_providers()}")
        self._check_signature(model.input_size)
        self._max_batch = self._fixed_batch or max_batch
        self._batch_sessions: dict[int, BatchSizeSession] = {}  # GPU: one per padded batch size
        self._stream: PriorityStream | None = None
        if self._device == "gpu":
            if self._gpu_options.priority_stream:
                self._stream = self._priority_stream()
            started = time.perf_counter()
            self.warm_up()
            graphs = sum(s.cuda_graph for s in self._batch_sessions.values())
            log.info("%s: warmed up batch sizes %s on the GPU in %.1f s (%d of them as CUDA graphs)",
                     self._path, self._gpu_batch_sizes(), time.perf_counter() - started, graphs)
        log.info("loaded %s: input %s %s %s, output %s %s, max batch %d, %s", self._path, self._input_name,
                 _dims(self._input_shape), self._input_dtype, self._output_name, _dims(self._output_shape),
                 self._max_batch, self._session.get_providers()[0])

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
            s = self._input_size
            stream = self._stream.provider_options() if self._stream is not None else {}
            session = BatchSizeSession(
                lambda data, extra: self._new_session(data, {**stream, **extra}), model, batch,
                input_name=self._input_name, output_name=self._output_name, item_shape=(3, s, s),
                input_dtype=self._input_dtype, device_id=self._device_id,
                cuda_graph=self._gpu_options.cuda_graph, where=str(self._path),
                stream=self._stream.handle if self._stream is not None else None)
            self._batch_sessions[batch] = session
        return session

    def _priority_stream(self) -> PriorityStream | None:
        try:
            return PriorityStream(self._device_id)
        except Exception as exc:  # noqa: BLE001 - cuda-python missing or refused: ORT's own stream
            log.warning("%s: inference runs on ONNX Runtime's own CUDA stream (no priority stream: %s)",
                        self._path, exc)
            return None

    def _candidate_model(self, load_path: Path, max_candidates: int | None) -> Any:
        """The model (onnx.ModelProto) with on-device candidate selection (pipeline/infer/candidates.py),
        or None to decode the full output on the host (switched off, or a model the graph does not fit)."""
        return load_with_candidates(load_path, max_candidates, str(self._path), self._check_output,
                                    "the full model output is decoded on the host")

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

    def _check_signature(self, input_size: int) -> None:
        where = self._path
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{where}: model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                             f"expected one image input [B, 3, S, S]")
        inp = inputs[0]
        shape = list(inp.shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ValueError(f"{where}: model input {inp.name!r} is {_dims(shape)}; expected [B, 3, S, S]")
        for d in shape[2:]:
            if isinstance(d, int) and d != input_size:
                raise ValueError(f"{where}: model input {inp.name!r} is {_dims(shape)} but model.input_size "
                                 f"is {input_size}")
        if inp.type not in ORT_DTYPES:
            raise ValueError(f"{where}: model input {inp.name!r} has type {inp.type}; expected float, "
                             f"float16 or uint8")

        out = self._session.get_outputs()[0]
        out_shape = list(out.shape)
        if self._output_layout is OutputLayout.ANCHORS:
            self._check_output(out.name, out_shape)

        self._input_name = inp.name
        self._input_shape = shape
        self._input_dtype = ORT_DTYPES[inp.type]
        self._input_size = input_size
        self._output_name = out.name
        self._output_shape = out_shape
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None

    def _check_output(self, name: str, out_shape: list[Any]) -> None:
        """The model's own output must be YOLOv8's [B, 4+classes, N] for the configured labels."""
        where = self._path
        want = 4 + len(self._labels)
        if len(out_shape) != 3:
            raise ValueError(f"{where}: model output {name!r} is {_dims(out_shape)}; expected "
                             f"[B, 4+classes, N] (YOLOv8 layout)")
        rows, anchors = out_shape[1], out_shape[2]
        if isinstance(rows, int) and rows != want:
            if anchors == want:
                raise ValueError(f"{where}: model output {name!r} is {_dims(out_shape)}, which looks "
                                 f"transposed; expected [B, {want}, N] (4 box rows + {want - 4} classes)")
            raise ValueError(f"{where}: model output {name!r} is {_dims(out_shape)}: {rows - 4} classes, "
                             f"but model.labels has {len(self._labels)}")

    # ------------------------------------------------------------------ contract

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]  # ORT frees the session with its last reference
        self._batch_sessions = {}
        if self._stream is not None:  # after the sessions that run on it
            self._stream.close()
            self._stream = None

    # ------------------------------------------------------------------ running

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
            out = self._session.run([self._output_name], {self._input_name: chunk})[0]
        out = np.asarray(out[:count], dtype=np.float32)
        rows = self.output_rows
        if out.ndim != 3 or out.shape[1] != rows:
            raise ValueError(f"{self._path}: model output is {list(out.shape)}; expected "
                             f"[{count}, {rows}, N] ({self._output_layout.value} layout, "
                             f"{len(self._labels)} labels)")
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
