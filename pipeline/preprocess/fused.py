"""Letterbox in one CUDA kernel (`preprocess: {device: gpu, kernel: fused}`).

Each output value of the [B,3,S,S] model input is written once, by one thread, which reads the
source picture directly: an NV12 surface from NVDEC (`decode.nvdec_output: nv12`; colour matrix
BT.601 or BT.709 and limited or full range, per picture) or an interleaved RGB picture (NVDEC's RGB
output, or a host frame uploaded first). The thread converts the 2x2 source pixels around its
sample point to RGB (rounded to uint8, as a decoder's RGB output would be), interpolates them as
cv2.INTER_LINEAR does, rounds, divides by 255 and stores float32 or float16 CHW; outside the
resized picture it stores 114/255. Conversion, resize, padding, normalisation and layout are one
pass: DALI's letterbox (dali.py, the reference path) needs NVDEC's RGB conversion before it and
two operators, i.e. the 1080p picture is read and written several times.

Compiled at run time with NVRTC (cuda-python's `cuda.bindings.nvrtc`, libnvrtc from the
nvidia-cuda-nvrtc wheel or the CUDA toolkit) for the device's own architecture, once per process
and device; launched with the driver API on the preprocessor's own stream. FMA contraction is off
(`--fmad=false`) so the colour conversion rounds exactly as nv12_to_rgb_reference does in numpy.

Against letterbox_reference(nv12_to_rgb_reference(...)) the result differs by at most one grey
level inside the picture (cv2 interpolates in 11-bit fixed point, the kernel in float32), as DALI does.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Sequence

import numpy as np

from pipeline.frame import Frame, LetterboxTransform
from pipeline.gpu.nv12 import is_nv12
from pipeline.gpu.runtime import CudaError
from pipeline.gpu.stream import CudaStream
from pipeline.preprocess.base import Preprocessor, PreprocessError, RejectFrame, frame_problem, is_device_image
from pipeline.preprocess.reference import PAD_VALUE, YUV_COEFFICIENTS

FORMAT_RGB, FORMAT_NV12 = 0, 1
MATRIX_CODES = {"bt601": 0, "bt709": 1}
BLOCK = (32, 8, 1)  # 256 threads; a warp covers 32 neighbouring output pixels of one row

# One entry per frame of the batch, copied to the device before each launch (must match FrameParams).
FRAME_PARAMS = np.dtype([
    ("plane0", np.uint64), ("plane1", np.uint64),
    ("pitch0", np.int32), ("pitch1", np.int32),
    ("src_w", np.int32), ("src_h", np.int32),
    ("resized_w", np.int32), ("resized_h", np.int32),
    ("pad_x", np.int32), ("pad_y", np.int32),
    ("format", np.int32), ("matrix", np.int32), ("full_range", np.int32), ("_unused", np.int32),
], align=True)


def _kernel_source() -> str:
    bt601, bt709 = YUV_COEFFICIENTS["bt601"], YUV_COEFFICIENTS["bt709"]
    coeffs = ", ".join(f"{c!r}f" for c in bt601 + bt709)
    return r"""
struct FrameParams {
    unsigned long long plane0;  // RGB: the interleaved picture; NV12: luma
    unsigned long long plane1;  // NV12: interleaved U,V at half resolution
    int pitch0, pitch1, src_w, src_h, resized_w, resized_h, pad_x, pad_y, format, matrix, full_range, unused;
};

__constant__ float COEFF[8] = {""" + coeffs + r"""};

__device__ __forceinline__ float clamp_round(float v) { return fminf(fmaxf(rintf(v), 0.0f), 255.0f); }

// RGB (0..255, integral) of source pixel (x, y): as nv12_to_rgb_reference computes it.
__device__ __forceinline__ void source_rgb(const FrameParams& f, int x, int y, float* rgb) {
    if (f.format == 0) {
        const unsigned char* p = (const unsigned char*)f.plane0 + (size_t)y * f.pitch0 + 3 * x;
        rgb[0] = p[0]; rgb[1] = p[1]; rgb[2] = p[2];
        return;
    }
    float Y = ((const unsigned char*)f.plane0)[(size_t)y * f.pitch0 + x];
    const unsigned char* c = (const unsigned char*)f.plane1 + (size_t)(y >> 1) * f.pitch1 + 2 * (x >> 1);
    float cb = (float)c[0] - 128.0f, cr = (float)c[1] - 128.0f;
    if (!f.full_range) {
        Y = (Y - 16.0f) * (255.0f / 219.0f);
        cb = cb * (255.0f / 224.0f);
        cr = cr * (255.0f / 224.0f);
    }
    const float* k = COEFF + 4 * f.matrix;
    rgb[0] = clamp_round(Y + k[0] * cr);
    rgb[1] = clamp_round(Y - k[1] * cb - k[2] * cr);
    rgb[2] = clamp_round(Y + k[3] * cb);
}

// cv2.INTER_LINEAR's source coordinate: (d + 0.5) * src / dst - 0.5, clamped at the edges.
__device__ __forceinline__ void source_span(int d, int src, int dst, int* i0, int* i1, float* w) {
    float s = ((float)d + 0.5f) * ((float)src / (float)dst) - 0.5f;
    float fl = floorf(s);
    int i = (int)fl;
    float a = s - fl;
    if (i < 0) { i = 0; a = 0.0f; }
    if (i >= src - 1) { i = src - 1; a = 0.0f; }
    *i0 = i; *i1 = min(i + 1, src - 1); *w = a;
}

__device__ __forceinline__ void letterbox_pixel(const FrameParams& f, int x, int y, float pad, float* out) {
    int rx = x - f.pad_x, ry = y - f.pad_y;
    if (rx < 0 || ry < 0 || rx >= f.resized_w || ry >= f.resized_h) {
        out[0] = out[1] = out[2] = pad;
        return;
    }
    int x0, x1, y0, y1; float ax, ay;
    source_span(rx, f.src_w, f.resized_w, &x0, &x1, &ax);
    source_span(ry, f.src_h, f.resized_h, &y0, &y1, &ay);
    float p00[3], p01[3], p10[3], p11[3];
    source_rgb(f, x0, y0, p00); source_rgb(f, x1, y0, p01);
    source_rgb(f, x0, y1, p10); source_rgb(f, x1, y1, p11);
    for (int c = 0; c < 3; ++c) {
        float top = p00[c] + (p01[c] - p00[c]) * ax;
        float bottom = p10[c] + (p11[c] - p10[c]) * ax;
        out[c] = rintf(top + (bottom - top) * ay) / 255.0f;
    }
}

extern "C" __global__ void letterbox_f32(const FrameParams* frames, float* out, int S, float pad) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= S || y >= S) return;
    const FrameParams f = frames[blockIdx.z];
    float v[3];
    letterbox_pixel(f, x, y, pad, v);
    size_t plane = (size_t)S * S, o = (size_t)blockIdx.z * 3 * plane + (size_t)y * S + x;
    out[o] = v[0]; out[o + plane] = v[1]; out[o + 2 * plane] = v[2];
}

extern "C" __global__ void letterbox_f16(const FrameParams* frames, unsigned short* out, int S, float pad) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= S || y >= S) return;
    const FrameParams f = frames[blockIdx.z];
    float v[3];
    letterbox_pixel(f, x, y, pad, v);
    size_t plane = (size_t)S * S, o = (size_t)blockIdx.z * 3 * plane + (size_t)y * S + x;
    for (int c = 0; c < 3; ++c) {
        unsigned short h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v[c]));  // no cuda_fp16.h needed under NVRTC
        out[o + c * plane] = h;
    }
}
"""


class CompiledKernels:
    """The module NVRTC built for one device, and its two entry points (float32, float16 output)."""

    _lock = threading.Lock()
    _by_device: dict[int, "CompiledKernels"] = {}

    @classmethod
    def for_device(cls, device_id: int) -> "CompiledKernels":
        with cls._lock:  # compile once per process and device (~0.3 s), whichever thread asks first
            kernels = cls._by_device.get(device_id)
            if kernels is None:
                kernels = cls._by_device[device_id] = cls(device_id)
            return kernels

    def __init__(self, device_id: int) -> None:
        from cuda.bindings import driver

        from pipeline.gpu.memory import check, cuda_runtime

        rt = cuda_runtime()
        check(rt.cudaSetDevice(device_id), f"cudaSetDevice({device_id})")
        check(rt.cudaFree(0), "cudaFree(0)")  # the primary context, current on this thread
        major = check(rt.cudaDeviceGetAttribute(rt.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, device_id),
                      "cudaDeviceGetAttribute")
        minor = check(rt.cudaDeviceGetAttribute(rt.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, device_id),
                      "cudaDeviceGetAttribute")
        self.arch = f"sm_{major}{minor}"
        image = compile_cuda(_kernel_source(), major, minor)
        self.module = check(driver.cuModuleLoadData(image), "cuModuleLoadData")
        self.functions = {
            np.dtype(np.float32): check(driver.cuModuleGetFunction(self.module, b"letterbox_f32"), "cuModuleGetFunction"),
            np.dtype(np.float16): check(driver.cuModuleGetFunction(self.module, b"letterbox_f16"), "cuModuleGetFunction"),
        }


def compile_cuda(source: str, major: int, minor: int) -> bytes:
    """NVRTC: CUDA C++ -> a cubin for sm_<major><minor> (PTX for compute_<..> if NVRTC is older than
    the device, which the driver then compiles at load)."""
    from cuda.bindings import nvrtc

    def ok(result: Any, call: str) -> Any:
        err, *values = result
        if int(err) != 0:
            raise PreprocessError(f"preprocess: NVRTC {call} failed: {getattr(err, 'name', err)}")
        return values[0] if len(values) == 1 else values

    last_error = ""
    for target, want_cubin in ((f"sm_{major}{minor}", True), (f"compute_{major}{minor}", False)):
        prog = ok(nvrtc.nvrtcCreateProgram(source.encode(), b"fused_letterbox.cu", 0, [], []), "nvrtcCreateProgram")
        try:
            opts = [f"--gpu-architecture={target}".encode(), b"--fmad=false", b"--std=c++17"]
            (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
            if int(err) != 0:
                size = ok(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
                log = b" " * size
                nvrtc.nvrtcGetProgramLog(prog, log)
                last_error = log.decode(errors="replace").strip().splitlines()[-1] if size > 1 else str(err)
                continue
            if want_cubin:
                size = ok(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
                image = b" " * size
                ok((nvrtc.nvrtcGetCUBIN(prog, image)[0], None), "nvrtcGetCUBIN")
            else:
                size = ok(nvrtc.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize")
                image = b" " * size
                ok((nvrtc.nvrtcGetPTX(prog, image)[0], None), "nvrtcGetPTX")
            return image
        finally:
            nvrtc.nvrtcDestroyProgram(prog)
    raise PreprocessError(f"preprocess: NVRTC cannot compile the fused letterbox for sm_{major}{minor}: {last_error}")


class FusedDeviceTensor:
    """The fused path's TensorBatch.tensor: a dense [B,3,S,S] array in device memory, in a pooled
    buffer that goes back to its pool when this object goes. Complete when returned (the launch
    is synchronised), so any stream may read it. Same surface as DaliDeviceTensor."""

    def __init__(self, pool: Any, ptr: int, nbytes: int, shape: tuple[int, ...], dtype: np.dtype,
                 device_id: int) -> None:
        self.shape = shape
        self.dtype = dtype
        self.device_id = device_id
        self.data_ptr = ptr
        self._release = weakref.finalize(self, pool.give_back, ptr, nbytes)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        from pipeline.gpu.memory import cuda_array_interface

        return cuda_array_interface(self.shape, self.dtype.str, self.data_ptr)

    def to_host(self) -> np.ndarray:
        """Copy to a numpy array (debugging, tests)."""
        from pipeline.gpu.memory import device_to_host

        return device_to_host(self.data_ptr, self.shape, self.dtype)


class FusedLetterbox(Preprocessor):
    """The single-pass CUDA letterbox. Frames: NV12 device pictures (pipeline/gpu/nv12.py), RGB
    device pictures (HxWx3 uint8, C-contiguous) or host RGB frames (uploaded first), mixed freely
    in one batch. TensorBatch.tensor is a FusedDeviceTensor."""

    device = "gpu"

    def __init__(self, input_size: int, dtype: Any = np.float32, max_batch: int = 16, device_id: int = 0,
                 on_reject: RejectFrame | None = None, high_priority: bool = False) -> None:
        super().__init__(input_size, dtype, max_batch, on_reject)
        self.device_id = device_id
        try:
            from pipeline.gpu.memory import DeviceBufferPool, check, cuda_runtime

            self._rt = cuda_runtime("preprocess: kernel fused needs cuda-python (install the [gpu] extra)")
            self._check = check
            self._kernels = CompiledKernels.for_device(device_id)
            self._cuda_stream = CudaStream(self._rt, highest_priority=high_priority)  # non-blocking
            self._stream = self._cuda_stream.handle
            self._pool = DeviceBufferPool(device_id)  # output tensors and uploads of host frames
            self._params_nbytes = FRAME_PARAMS.itemsize * max_batch
            self._params_ptr = self._pool.take(self._params_nbytes)
            # CUDA events around each launch: the kernel's own GPU time, which `pipeline bench`
            # reports (gpu_seconds / gpu_frames), costs two event records per batch
            self._events = tuple(check(self._rt.cudaEventCreate(), "cudaEventCreate") for _ in range(2))
        except PreprocessError:
            raise
        except Exception as exc:  # no device, no driver, no NVRTC library
            raise PreprocessError(f"preprocess: kernel fused cannot start on cuda:{device_id}: "
                                  f"{_first_line(exc)}") from exc
        # host staging for the per-frame parameters (a few hundred bytes a batch)
        self._params_host = np.zeros(max_batch, FRAME_PARAMS)
        self.gpu_seconds = 0.0  # kernel time summed over every batch so far
        self._device_current = threading.local()  # .set: this device was made current on the thread
        self.gpu_frames = 0

    def _frame_problems(self, frames: Sequence[Frame]) -> list[str | None]:
        return [frame_problem(f, allow_device=True, allow_nv12=True) for f in frames]

    def _letterbox(self, images: Sequence[Any], transforms: Sequence[LetterboxTransform]) -> Any:
        from cuda.bindings import driver

        count, size = len(images), self.input_size
        # the batch thread, not the one that built us: make this device's primary context current,
        # once per thread (every CUDA call lets go of the interpreter lock and waits to get it back)
        if not getattr(self._device_current, "set", False):  # thread-local: a new thread starts unset
            self._check(self._rt.cudaSetDevice(self.device_id), f"cudaSetDevice({self.device_id})")
            self._device_current.set = True
        uploads = []  # host frames copied to the GPU: kept alive until the kernel has run
        rows = []  # one FRAME_PARAMS record per frame, filled as tuples: one numpy call per batch
        for image, t in zip(images, transforms):
            if isinstance(image, np.ndarray):
                image = self._upload(image)
                uploads.append(image)
            if is_nv12(image):
                planes = (image.ptr, image.chroma_ptr, image.pitch, image.pitch,
                          FORMAT_NV12, MATRIX_CODES[image.matrix], int(image.full_range))
            else:
                planes = (int(image.__cuda_array_interface__["data"][0]), 0, t.src_width * 3, 0, FORMAT_RGB, 0, 1)
            plane0, plane1, pitch0, pitch1, fmt, matrix, full_range = planes
            rows.append((plane0, plane1, pitch0, pitch1, t.src_width, t.src_height, t.resized_width,
                         t.resized_height, t.pad_x, t.pad_y, fmt, matrix, full_range, 0))
        params = self._params_host[:count]
        params[:] = np.array(rows, FRAME_PARAMS)
        shape = (count, 3, size, size)
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        out_ptr = self._pool.take(nbytes)
        out = FusedDeviceTensor(self._pool, out_ptr, nbytes, shape, self.dtype, self.device_id)
        rt, check = self._rt, self._check
        try:
            check(rt.cudaMemcpyAsync(self._params_ptr, params.ctypes.data, params.nbytes,
                                     rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream), "cudaMemcpyAsync params")
            args = (np.array([self._params_ptr], np.uint64), np.array([out_ptr], np.uint64),
                    np.array([size], np.int32), np.array([np.float32(PAD_VALUE) / np.float32(255)], np.float32))
            arg_ptrs = np.array([a.ctypes.data for a in args], np.uint64)
            grid = ((size + BLOCK[0] - 1) // BLOCK[0], (size + BLOCK[1] - 1) // BLOCK[1], count)
            check(rt.cudaEventRecord(self._events[0], self._stream), "cudaEventRecord")
            check(driver.cuLaunchKernel(self._kernels.functions[self.dtype], *grid, *BLOCK, 0, self._stream,
                                        arg_ptrs.ctypes.data, 0), "cuLaunchKernel")
            check(rt.cudaEventRecord(self._events[1], self._stream), "cudaEventRecord")
            check(rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            self.gpu_seconds += check(rt.cudaEventElapsedTime(*self._events), "cudaEventElapsedTime") / 1000.0
            self.gpu_frames += count
        except Exception as exc:
            sizes = ", ".join(f"{t.src_width}x{t.src_height}" for t in transforms)
            raise PreprocessError(f"preprocess: fused letterbox failed on a batch of {count} ({sizes}): "
                                  f"{_first_line(exc)}") from exc
        del uploads
        return out

    def _upload(self, image: np.ndarray) -> Any:
        from pipeline.gpu.memory import upload

        return upload(self._pool, image)

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        self._pool.give_back(self._params_ptr, self._params_nbytes)
        self._pool.close()  # tensors still handed out are freed when they go
        for event in self._events:
            self._rt.cudaEventDestroy(event)
        try:
            self._cuda_stream.close()
        except CudaError:  # closing goes on (a lost GPU, say), as for the events above
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["FusedLetterbox", "FusedDeviceTensor", "compile_cuda", "is_device_image"]
