"""Inference backend contract: TensorBatch in, InferenceResult (float32 on the host, OutputLayout) out.

Subclasses declare `type_key`, register with `@register_backend`, and implement `_run_chunk`
for at most `max_batch` images; `infer` does the splitting and the dtype cast.

`submit(batch)` starts a batch and returns a Submitted whose `result()` is the InferenceResult:
a backend that can queue work on the GPU without waiting (ONNX Runtime with queue_ahead) returns
before the batch has run, so its caller can queue the next one first (app/lookahead.py); every
other backend runs the batch right there (`Completed`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Protocol, TypeVar

import numpy as np

from pipeline.config import ModelConfig
from pipeline.frame import CANDIDATE_ROWS, InferenceResult, OutputLayout, TensorBatch
from pipeline.gpu import device_buffer
from pipeline.infer.plugins import BACKEND_KEYS, backend_plugin
from pipeline.registry import ImplementationRegistry

_BACKENDS: ImplementationRegistry[type[Backend]] = ImplementationRegistry(
    "backend", "backend type_key", BACKEND_KEYS, "pipeline/infer/plugins.py", "@register_backend", backend_plugin,
    TypeError)

B = TypeVar("B", bound=type["Backend"])


class Submitted(Protocol):
    """A batch handed to Backend.submit(). `done`: its result is there without waiting."""

    done: bool

    def result(self) -> InferenceResult:
        """The batch's result, waiting for it if need be (the same object on every call)."""


class Completed:
    """A batch that ran inside submit()."""

    done = True

    def __init__(self, result: InferenceResult) -> None:
        self._result = result

    def result(self) -> InferenceResult:
        return self._result


class Queued:
    """A batch queued on the GPU: `finish()` waits for it and makes the result, once."""

    done = False

    def __init__(self, finish: Callable[[], InferenceResult]) -> None:
        self._finish: Callable[[], InferenceResult] | None = finish
        self._result: InferenceResult | None = None

    def result(self) -> InferenceResult:
        if self._finish is not None:
            finish, self._finish = self._finish, None
            self._result = finish()
        assert self._result is not None
        return self._result


def register_backend(cls: B) -> B:
    """Class decorator of a backend implementation; its type_key must be a declared plug-in key
    (pipeline/infer/plugins.py), so no backend exists that the config schema does not accept."""
    return _BACKENDS.register(cls)


def known_backends() -> list[str]:
    """The backend keys model.backend accepts (the declared plug-ins)."""
    return sorted(BACKEND_KEYS)


def backend_class(key: str) -> type["Backend"]:
    """The Backend class of a declared plug-in, importing its implementation on first use."""
    return _BACKENDS.get(key)


def create_backend(model: ModelConfig, max_batch: int, device: str = "cpu", **options: Any) -> "Backend":
    """Build the backend named by model.backend. `options` go to its constructor (e.g. intra_op_threads)."""
    return backend_class(model.backend)(model, max_batch, device, **options)


def parse_device(device: str) -> tuple[str, int]:
    """'cpu' | 'gpu' | 'cuda' | 'gpu:N' | 'cuda:N' -> ('cpu' | 'gpu', device id)."""
    kind, _, index = device.strip().lower().partition(":")
    if kind == "cuda":
        kind = "gpu"
    if kind not in ("cpu", "gpu") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ValueError(f"device {device!r}: expected cpu, gpu or gpu:N")
    return kind, int(index or 0)


class Backend(ABC):
    """A loaded model. Subclasses set `_input_name`, `_input_size`, `_input_dtype`, `_max_batch` and
    `_labels` while loading; the read-only properties below serve them."""

    type_key: ClassVar[str]
    _input_name: str
    _input_size: int
    _input_dtype: np.dtype
    _max_batch: int
    _labels: list[str]
    _output_layout: OutputLayout = OutputLayout.ANCHORS
    _input_layout: str = "NCHW"  # or "NHWC" (model.input.layout, resolved by pipeline/infer/model_spec.py)

    _model_spec: Any = None  # the resolved ModelSpec (pipeline/infer/model_spec.py), set while loading

    @property
    def model_spec(self) -> Any:
        """What the model is (format, classes, input conventions); None for a backend that has none."""
        return self._model_spec

    @property
    def output_layout(self) -> OutputLayout:
        """What the InferenceResult's output holds: all anchors, or the device-selected candidates."""
        return self._output_layout

    @property
    def input_name(self) -> str:
        return self._input_name

    @property
    def input_size(self) -> int:
        """S of the model's [B,3,S,S] (or [B,S,S,3]) input."""
        return self._input_size

    @property
    def input_layout(self) -> str:
        return self._input_layout

    def input_shape(self, count: int) -> tuple[int, int, int, int]:
        s = self._input_size
        return (count, 3, s, s) if self._input_layout == "NCHW" else (count, s, s, 3)

    @property
    def input_dtype(self) -> np.dtype:
        return self._input_dtype

    @property
    def max_batch(self) -> int:
        """Most images one model call takes; larger TensorBatches are split."""
        return self._max_batch

    @property
    def num_classes(self) -> int:
        return len(self._labels)

    @property
    def output_rows(self) -> int:
        """Rows of the [B, rows, N] output: 6 candidate rows, or 4 box rows + one per class."""
        return CANDIDATE_ROWS if self._output_layout is OutputLayout.CANDIDATES else 4 + len(self._labels)

    @abstractmethod
    def _run_chunk(self, chunk: Any, count: int) -> np.ndarray:
        """Run `count` (<= max_batch) images: a numpy array already of input_dtype, or whatever
        `_device_chunks` produced. Returns [count, rows, N] float32 on the host, in output_layout."""

    def _device_chunks(self, tensor: Any, count: int) -> list[tuple[Any, int]]:
        """Split a device buffer (__cuda_array_interface__) into pieces of at most max_batch."""
        raise ValueError(f"{self.type_key}: this backend takes host (numpy) tensors only; "
                         f"use preprocess.device: cpu or device gpu for the model")

    def _split_device_tensor(self, tensor: Any, count: int, where: str, wants: str,
                             hint: str) -> list[tuple[Any, int]]:
        """For _device_chunks: view a device tensor as input_shape(count), check it is input_dtype
        (no cast on the device without a CUDA array library), split it into max_batch pieces.
        `wants`/`hint` word the dtype error ("the model wants float16 (hint)")."""
        view = device_buffer.device_view(tensor, self.input_shape(count), where)
        if view.dtype != self.input_dtype:
            raise ValueError(f"{where}: GPU input is {view.dtype} but {wants} {self.input_dtype} ({hint})")
        return device_buffer.split(view, self.max_batch)

    def _chunks(self, batch: TensorBatch) -> list[tuple[Any, int]]:
        """Check the batch's tensor and split it into model calls of at most max_batch images."""
        count = len(batch.frames)
        if count == 0:
            raise ValueError(f"{self.type_key}: empty batch")
        tensor = batch.tensor
        if hasattr(tensor, "__cuda_array_interface__"):
            return self._device_chunks(tensor, count)
        tensor = np.asarray(tensor)
        if tensor.shape != self.input_shape(count):
            raise ValueError(f"{self.type_key}: input tensor is {list(tensor.shape)}, model wants "
                             f"{list(self.input_shape(count))} for a batch of {count} frames")
        if tensor.dtype != self.input_dtype:
            tensor = tensor.astype(self.input_dtype)
        step = self.max_batch  # numpy slices are views: splitting copies nothing
        return [(tensor[i:i + step], min(step, count - i)) for i in range(0, count, step)]

    def infer(self, batch: TensorBatch) -> InferenceResult:
        outputs = [self._run_chunk(chunk, n) for chunk, n in self._chunks(batch)]
        return self._result(batch, outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=0))

    def submit(self, batch: TensorBatch) -> Submitted:
        """Start `batch`; see the module docs. Default: run it now."""
        return Completed(self.infer(batch))

    def _result(self, batch: TensorBatch, output: np.ndarray) -> InferenceResult:
        return InferenceResult(frames=batch.frames, transforms=batch.transforms, output=output,
                               formed_at=batch.formed_at, layout=self._output_layout)

    def bind_to_thread(self) -> None:
        """Called by the thread that will run infer(), before any other thread uses the GPU, for
        backends with per-thread state (ONNX Runtime captures its CUDA graphs per thread).
        infer() from other threads still works. Default: nothing to do."""

    def close(self) -> None:
        """Release the model (sessions, device memory). Safe to call twice."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

