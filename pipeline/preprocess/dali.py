"""Letterbox with NVIDIA DALI: one pipeline, built once, fed per batch through external_source.

Graph (same two operators on "cpu" and "gpu"):

    images (HWC uint8, per-sample sizes) --resize to (resized_width, resized_height) per sample
        --crop_mirror_normalize: SxS window centred as LetterboxTransform says, out-of-bounds
          filled with 114/255, x/255, HWC -> CHW, float32 or float16 (one pass)

Target sizes and window positions come from LetterboxTransform.fit and are fed per sample, so the
geometry is exactly ours: crop_mirror_normalize puts the window at roundf(pos * (resized - S)); with
pos = pad / (S - resized) that is exactly -pad (the float error is ~1e-7, far from the 0.5 that
rounding would need). The padding is exactly float32(114/255) (cast to float16 for fp16), as in the
reference. Inside the picture DALI multiplies by 1/255 instead of dividing: 1 float32 ulp at most.

Interpolation: linear with antialias off, which is what cv2.INTER_LINEAR does (also when
downscaling). Against letterbox_reference the result differs by at most 1 grey level (1/255) per
value, on ~12% of the resized region (cv2 rounds in 11-bit fixed point, DALI in float); identical
at scale 1. With DALI's default antialias the error reaches 15/255 at 1280x720 -> 640.

model.input options (InputConvention): BGR adds a color_space_conversion of the resized uint8
picture; NHWC sets crop_mirror_normalize's output_layout; scale/mean/std become its mean and std
(mean/scale, std/scale) and the pad its per-channel fill value in output units; uint8 output
takes mean 0, std 1; stretch is a resize to SxS with the window at 0 (LetterboxTransform.stretch).

(A resize -> slice(pad) -> crop_mirror_normalize(std=1) -> /255 -> cast graph is bit-exact in the
division too, but 1.5-2x slower on the cpu, mostly in slice and the float16 cast.)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from nvidia.dali import fn, pipeline_def, types

from pipeline.frame import Frame, LetterboxTransform
from pipeline.preprocess.base import (
    YOLO_INPUT,
    InputConvention,
    Preprocessor,
    PreprocessError,
    RejectFrame,
    frame_problem,
    is_device_image,
)

IMAGES = "images"
WIDTHS = "resized_width"
HEIGHTS = "resized_height"
WINDOW_X = "window_pos_x"
WINDOW_Y = "window_pos_y"

DALI_DTYPES = {np.dtype(np.float32): types.FLOAT, np.dtype(np.float16): types.FLOAT16,
               np.dtype(np.uint8): types.UINT8}


def normalize_arguments(convention: InputConvention, dtype: np.dtype) -> dict[str, Any]:
    """crop_mirror_normalize's mean, std and fill_values for the convention (output = (in - mean) / std)."""
    if dtype == np.uint8:
        return {"mean": 0.0, "std": 1.0, "fill_values": float(convention.pad_value)}
    if convention.scale == 1 / 255 and not convention.normalized:  # the YOLO default, as before
        return {"mean": 0.0, "std": 255.0, "fill_values": convention.pad_value / 255.0}
    s = convention.scale
    mean = [m / s for m in convention.mean]
    std = [d / s for d in convention.std]
    fill = [(convention.pad_value * s - m) / d for m, d in zip(convention.mean, convention.std)]
    return {"mean": mean, "std": std, "fill_values": fill}


@pipeline_def
def letterbox_graph(device: str, input_size: int, out_dtype: Any, convention: InputConvention = YOLO_INPUT,
                    out_np_dtype: Any = np.float32):
    # cpu: the frames are immutable and run() waits for the outputs, so DALI may read them in place.
    images = fn.external_source(name=IMAGES, device=device, layout="HWC", ndim=3, dtype=types.UINT8,
                                no_copy=device == "cpu")
    # Per-sample scalars; DALI takes argument inputs from the cpu in both variants.
    widths, heights, window_x, window_y = (
        fn.external_source(name=name, device="cpu", ndim=0, dtype=types.FLOAT)
        for name in (WIDTHS, HEIGHTS, WINDOW_X, WINDOW_Y))
    resized = fn.resize(images, resize_x=widths, resize_y=heights,
                        interp_type=types.INTERP_LINEAR, antialias=False)
    if convention.channels == "BGR":
        resized = fn.color_space_conversion(resized, image_type=types.RGB, output_type=types.BGR)
    return fn.crop_mirror_normalize(
        resized, crop=[input_size, input_size], crop_pos_x=window_x, crop_pos_y=window_y,
        out_of_bounds_policy="pad", output_layout="CHW" if convention.layout == "NCHW" else "HWC",
        dtype=out_dtype, **normalize_arguments(convention, np.dtype(out_np_dtype)))


def window_position(pad: int, resized: int, input_size: int) -> np.float32:
    """crop_pos for crop_mirror_normalize so that roundf(pos * (resized - S)) == -pad."""
    if resized >= input_size:
        return np.float32(0.0)
    return np.float32(pad) / np.float32(input_size - resized)


class DaliDeviceTensor:
    """The GPU path's TensorBatch.tensor: a dense [B,3,S,S] array in device memory.

    It owns the DALI output (the pipeline's output TensorListGPU and a TensorGPU view of it), so the
    memory stays valid for as long as this object lives; DALI's default executor never reuses
    an output buffer that is still referenced. The data is ready when the object is returned
    (the pipeline's outputs are host-synchronous), so any stream may read it.

    For ONNX Runtime IO binding:
        binding.bind_input(name, "cuda", t.device_id, t.dtype, t.shape, t.data_ptr)
    or anything that takes __cuda_array_interface__ (CuPy, Numba, torch.as_tensor) or DLPack.
    """

    def __init__(self, batch: Any, device_id: int) -> None:
        self.dali_batch = batch  # nvidia.dali.backend.TensorListGPU, kept so its memory stays ours
        self.dali_tensor = batch.as_tensor()  # TensorGPU viewing the whole (dense) batch
        self.device_id = device_id
        cai = self.dali_tensor.__cuda_array_interface__
        self.shape: tuple[int, ...] = tuple(int(d) for d in cai["shape"])
        self.dtype = np.dtype(cai["typestr"])
        self.data_ptr: int = int(cai["data"][0])

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return self.dali_tensor.__cuda_array_interface__

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        return self.dali_tensor.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self) -> Any:
        device = getattr(self.dali_tensor, "__dlpack_device__", None)
        return device() if device else (2, self.device_id)  # (kDLCUDA, device)

    def to_host(self) -> np.ndarray:
        """Copy to a numpy array (debugging, tests)."""
        return np.asarray(self.dali_batch.as_cpu().as_array())


class DaliLetterbox(Preprocessor):
    """DALI letterbox on "cpu" (numpy in, numpy out) or "gpu" (device or host frames in, device out).

    cpu: TensorBatch.tensor is a C-contiguous numpy [B,3,S,S] array that shares DALI's output
         buffer (no copy); it stays valid after later calls.
    gpu: TensorBatch.tensor is a DaliDeviceTensor (see there). Frames may be device arrays
         (__cuda_array_interface__, device `device_id`) or numpy arrays. DALI takes one memory kind
         per batch: an all-host batch is copied to the GPU by DALI; in a batch with device frames,
         host frames (e.g. from a camera whose NVDEC decode fell back to the CPU) are uploaded
         first (cuda-python), so mixed cameras never cost each other frames.
    """

    def __init__(self, device: str, input_size: int, dtype: Any = np.float32, max_batch: int = 16,
                 num_threads: int = 2, device_id: int = 0, on_reject: RejectFrame | None = None,
                 convention: InputConvention = YOLO_INPUT) -> None:
        if device not in ("cpu", "gpu"):
            raise ValueError(f"preprocess: device {device!r} must be 'cpu' or 'gpu'")
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"preprocess: num_threads {num_threads!r} must be a positive int")
        super().__init__(input_size, dtype, max_batch, on_reject, convention)
        self.device = device
        self.num_threads = num_threads
        self.device_id = device_id
        self._upload_pool: Any = None  # DeviceBufferPool for host frames in device batches, made on first use
        self._pipe = self._build()

    def _build(self) -> Any:
        pipe = letterbox_graph(
            self.device, self.input_size, DALI_DTYPES[self.dtype], self.convention, self.dtype,
            batch_size=self.max_batch, num_threads=self.num_threads,
            device_id=self.device_id if self.device == "gpu" else None,
            # run(**inputs) needs depth 1; there is nothing to prefetch: each batch is fed when formed.
            prefetch_queue_depth=1, exec_dynamic=True)
        try:
            pipe.build()
        except Exception as exc:
            raise PreprocessError(f"preprocess: cannot build the DALI {self.device} pipeline: "
                                  f"{_first_line(exc)}") from exc
        return pipe

    def _frame_problems(self, frames: Sequence[Frame]) -> list[str | None]:
        if self.device == "cpu":
            return super()._frame_problems(frames)
        return [frame_problem(f, allow_device=True) for f in frames]

    def _letterbox(self, images: Sequence[Any], transforms: Sequence[LetterboxTransform]) -> Any:
        if self._pipe is None:  # a previous run failed; a fresh pipeline is cheap (~10 ms)
            self._pipe = self._build()
        if self.device == "gpu" and any(is_device_image(im) for im in images):
            images = [self._upload(im) if isinstance(im, np.ndarray) else im for im in images]
        inputs = {
            IMAGES: [np.ascontiguousarray(im) if isinstance(im, np.ndarray) else im for im in images],
            WIDTHS: np.array([t.resized_width for t in transforms], np.float32),
            HEIGHTS: np.array([t.resized_height for t in transforms], np.float32),
            WINDOW_X: np.array([window_position(t.pad_x, t.resized_width, t.input_size) for t in transforms]),
            WINDOW_Y: np.array([window_position(t.pad_y, t.resized_height, t.input_size) for t in transforms]),
        }
        try:
            for name, data in inputs.items():
                self._pipe.feed_input(name, data, cuda_stream=_producer_stream(data) if name == IMAGES else None)
            (out,) = self._pipe.run()
            return self._as_output(out)
        except Exception as exc:
            self._pipe = None  # do not trust a pipeline that failed mid-iteration
            sizes = ", ".join(f"{t.src_width}x{t.src_height}" for t in transforms)
            raise PreprocessError(f"preprocess: DALI {self.device} letterbox failed on a batch of "
                                  f"{len(images)} ({sizes}): {_first_line(exc)}") from exc

    def _as_output(self, out: Any) -> Any:
        if not out.is_dense_tensor():
            if self.device == "gpu":
                raise PreprocessError("preprocess: DALI returned a non-contiguous batch")
            return out.as_array()
        if self.device == "gpu":
            return DaliDeviceTensor(out, self.device_id)
        # A view: the numpy array keeps DALI's buffer alive and the executor does not reuse it.
        return np.asarray(out.as_tensor())

    def _upload(self, image: np.ndarray) -> Any:
        """A host frame in a batch of device frames: copy it to the GPU (DALI takes one kind)."""
        from pipeline.gpu.memory import DeviceBufferPool, upload

        if self._upload_pool is None:
            self._upload_pool = DeviceBufferPool(self.device_id)
        return upload(self._upload_pool, image)

    def close(self) -> None:
        super().close()
        self._pipe = None  # drops DALI's threads and buffers (outputs already handed out stay valid)
        if self._upload_pool is not None:
            self._upload_pool.close()
            self._upload_pool = None


def _producer_stream(images: list[Any]) -> Any:
    """The CUDA stream the device images were written on, when all producers name the same one.

    CAI v3 'stream': 1 is the legacy default stream (DALI spells it 0), 2 the per-thread default
    stream (its handle is 2), anything else a cudaStream_t. DALI then copies on that stream, ordered
    after the producer's work. Otherwise (None) DALI copies on its own stream and blocks until done,
    which is correct when producers hand over finished frames, as CAI v2 and our sources do.
    """
    if not images or not is_device_image(images[0]):
        return None
    streams = {im.__cuda_array_interface__.get("stream") for im in images}
    if len(streams) != 1:
        return None
    stream = streams.pop()
    if not isinstance(stream, int) or stream <= 0:
        return None
    return 0 if stream == 1 else stream


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
