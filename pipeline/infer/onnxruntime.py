"""ONNX Runtime backend: CPU, or CUDA with IO binding of the preprocessor's device buffer."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pipeline.config import ModelConfig
from pipeline.infer import device_buffer
from pipeline.infer.base import Backend, parse_device, register_backend
from pipeline.infer.device_buffer import DeviceView
from pipeline.infer.fp16 import fp16_model_path

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
        if not self._path.is_file():
            raise ValueError(f"{self._path}: no such model file")
        providers = self._providers()
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
        try:
            self._session = ort.InferenceSession(str(load_path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises several types, with multi-line messages
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{self._path}: cannot load ONNX model: {first}") from None
        if self._device == "gpu" and self._session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"{self._path}: CUDAExecutionProvider did not load (CUDA/cuDNN libraries "
                               f"missing?); session providers: {self._session.get_providers()}")
        self._check_signature(model.input_size)
        self._max_batch = self._fixed_batch or max_batch
        self._staging_buffers: dict[int, Any] = {}
        if self._device == "gpu":
            started = time.perf_counter()
            self.warm_up()
            log.info("%s: warmed up batch sizes %s on the GPU in %.1f s", self._path, self._gpu_batch_sizes(),
                     time.perf_counter() - started)
        log.info("loaded %s: input %s %s %s, output %s %s, max batch %d, %s", self._path, self._input_name,
                 _dims(self._input_shape), self._input_dtype, self._output_name, _dims(self._output_shape),
                 self._max_batch, self._session.get_providers()[0])

    # ------------------------------------------------------------------ load-time checks

    def _providers(self) -> list[Any]:
        if self._device == "cpu":
            return ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"device gpu needs onnxruntime-gpu (the [gpu] extra); this onnxruntime "
                               f"has {', '.join(available)}")
        _preload_cuda_libraries()
        return [("CUDAExecutionProvider", {"device_id": self._device_id}), "CPUExecutionProvider"]

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
        want = 4 + len(self._labels)
        if len(out_shape) != 3:
            raise ValueError(f"{where}: model output {out.name!r} is {_dims(out_shape)}; expected "
                             f"[B, 4+classes, N] (YOLOv8 layout)")
        rows, anchors = out_shape[1], out_shape[2]
        if isinstance(rows, int) and rows != want:
            if anchors == want:
                raise ValueError(f"{where}: model output {out.name!r} is {_dims(out_shape)}, which looks "
                                 f"transposed; expected [B, {want}, N] (4 box rows + {want - 4} classes)")
            raise ValueError(f"{where}: model output {out.name!r} is {_dims(out_shape)}: {rows - 4} classes, "
                             f"but model.labels has {len(self._labels)}")

        self._input_name = inp.name
        self._input_shape = shape
        self._input_dtype = ORT_DTYPES[inp.type]
        self._input_size = input_size
        self._output_name = out.name
        self._output_shape = out_shape
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None

    # ------------------------------------------------------------------ contract

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]  # ORT frees the session with its last reference
        self._staging_buffers = {}

    # ------------------------------------------------------------------ running

    def _run_chunk(self, chunk: Any, count: int) -> np.ndarray:
        if self._session is None:
            raise RuntimeError(f"{self._path}: backend is closed")
        if isinstance(chunk, DeviceView):
            out = self._run_device(chunk, count)
        else:
            if self._fixed_batch and count < self._fixed_batch:
                # fixed-batch models take exactly that many images: pad, then drop the padding's outputs
                pad = np.zeros((self._fixed_batch - count,) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            out = self._session.run([self._output_name], {self._input_name: chunk})[0]
        out = np.asarray(out[:count], dtype=np.float32)
        if out.ndim != 3 or out.shape[1] != 4 + len(self._labels):
            raise ValueError(f"{self._path}: model output is {list(out.shape)}; expected "
                             f"[{count}, {4 + len(self._labels)}, N] for {len(self._labels)} labels")
        return out

    def _device_chunks(self, tensor: Any, count: int) -> list[tuple[Any, int]]:
        if self._device != "gpu":
            raise ValueError(f"{self._path}: a GPU input tensor needs the model on device gpu")
        s = self._input_size
        view = device_buffer.device_view(tensor, (count, 3, s, s), str(self._path))
        if view.dtype != self._input_dtype:
            # no cast on the device without a CUDA array library: the preprocessor must match
            raise ValueError(f"{self._path}: GPU input is {view.dtype} but the model wants {self._input_dtype} "
                             f"(model.precision decides the preprocessor's output type)")
        return device_buffer.split(view, self._max_batch)

    def _device_batch(self, count: int) -> int:
        """The batch size a device chunk of `count` images runs at: the fixed batch, else the next
        power of two (capped at max_batch). A handful of input shapes instead of one per batch size:
        ONNX Runtime's CUDA EP plans (and cuDNN tunes) each new shape once, which took inference
        from ~3.2k to ~150 frames/s on the H200 while real-time batches varied in size."""
        if self._fixed_batch:
            return self._fixed_batch
        size = 1
        while size < count:
            size *= 2
        return min(size, self._max_batch)

    def _gpu_batch_sizes(self) -> list[int]:
        sizes = {self._device_batch(n) for n in range(1, self._max_batch + 1)}
        return sorted(sizes)

    def _staging(self, batch: int) -> Any:
        """An ORT-owned device input buffer of `batch` images, made once per size."""
        staging = self._staging_buffers.get(batch)
        if staging is None:
            shape = [batch, 3, self._input_size, self._input_size]
            staging = ort.OrtValue.ortvalue_from_shape_and_type(shape, self._input_dtype.type, "cuda",
                                                                self._device_id)
            self._staging_buffers[batch] = staging
        return staging

    def warm_up(self) -> None:
        """Run every device batch size once (at load), so shape planning and cuDNN tuning happen
        before the first frame instead of stalling live cameras."""
        for batch in self._gpu_batch_sizes():
            staging = self._staging(batch)
            shape = (batch, 3, self._input_size, self._input_size)
            self._run_device(DeviceView(staging.data_ptr(), shape, self._input_dtype, staging), batch)

    def _run_device(self, view: DeviceView, count: int) -> np.ndarray:
        batch = self._device_batch(count)
        if batch > count:
            # pad by copying into an ORT-owned buffer of the bucket's size; the tail is whatever the
            # buffer held, and its outputs are dropped (images in a batch do not influence each other)
            staging = self._staging(batch)
            if staging.data_ptr() != view.ptr:
                device_buffer.copy_device_to_device(staging.data_ptr(), view.ptr, view.nbytes)
            view = DeviceView(staging.data_ptr(), (batch,) + view.shape[1:], view.dtype, staging)
        binding = self._session.io_binding()
        binding.bind_input(self._input_name, device_type="cuda", device_id=self._device_id,
                           element_type=view.dtype.type, shape=list(view.shape), buffer_ptr=view.ptr)
        binding.bind_output(self._output_name, device_type="cpu")  # small; the postprocess runs on the host
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]
