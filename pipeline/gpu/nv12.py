"""NV12 pictures in device memory: what NVDEC decodes to, handed on without converting to RGB.

Layout (one buffer): `height` rows of luma, then ceil(height / 2) rows of interleaved U, V at half
resolution, every row `pitch` bytes (pitch >= width rounded up to even). The colour matrix and range
travel with the picture, because the stream says them and the preprocessor converts (BT.601 or
BT.709; limited 16..235 or full 0..255).
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from pipeline.gpu.memory import DeviceBufferPool, check, cuda_array_interface, cuda_runtime, device_to_host

NV12 = "nv12"
MATRICES = ("bt601", "bt709")


def nv12_rows(height: int) -> int:
    """Rows of a whole NV12 picture: luma rows plus chroma rows."""
    return int(height) + (int(height) + 1) // 2


def nv12_pitch(width: int) -> int:
    """The tightest pitch for a picture `width` pixels wide (chroma rows hold ceil(w/2) U,V pairs)."""
    return int(width) + (int(width) & 1)


class DeviceNV12View:
    """An NV12 picture at `ptr` in device memory. Exposes __cuda_array_interface__ as the whole
    buffer (rows x pitch uint8, luma then chroma), never __array_interface__; `width`/`height` are
    the picture's. Subclasses own the memory (DeviceNV12Image: pooled; a worker's shared buffer)."""

    pixel_format = NV12

    def __init__(self, device_id: int, ptr: int, width: int, height: int, pitch: int,
                 matrix: str = "bt601", full_range: bool = False) -> None:
        if matrix not in MATRICES:
            raise ValueError(f"NV12 picture: colour matrix {matrix!r} must be one of {MATRICES}")
        if pitch < nv12_pitch(width):
            raise ValueError(f"NV12 picture: pitch {pitch} is less than the width {width} needs")
        self.device_id = device_id
        self.ptr = int(ptr)
        self.width, self.height, self.pitch = int(width), int(height), int(pitch)
        self.matrix = matrix
        self.full_range = bool(full_range)
        self.shape = (nv12_rows(height), self.pitch)
        self.nbytes = self.shape[0] * self.pitch

    @property
    def chroma_ptr(self) -> int:
        return self.ptr + self.height * self.pitch

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return cuda_array_interface(self.shape, "|u1", self.ptr)

    def to_host(self) -> np.ndarray:
        """A numpy copy of the whole buffer (tests, debugging only)."""
        return device_to_host(self.ptr, self.shape, np.uint8)


class DeviceNV12Image(DeviceNV12View):
    """An NV12 picture in one buffer of its camera's pool; the buffer goes back when the image goes."""

    def __init__(self, pool: DeviceBufferPool, width: int, height: int, matrix: str = "bt601",
                 full_range: bool = False) -> None:
        pitch = nv12_pitch(width)
        nbytes = nv12_rows(height) * pitch
        super().__init__(pool.device_id, pool.take(nbytes), width, height, pitch, matrix, full_range)
        self._release = weakref.finalize(self, pool.give_back, self.ptr, self.nbytes)


def upload_nv12(pool: DeviceBufferPool, nv12: np.ndarray, width: int, height: int, matrix: str = "bt601",
                full_range: bool = False) -> DeviceNV12Image:
    """Copy a host NV12 buffer (rows x pitch uint8, as DeviceNV12View describes) to the GPU (tests)."""
    rt = cuda_runtime()
    nv12 = np.ascontiguousarray(nv12)
    out = DeviceNV12Image(pool, width, height, matrix, full_range)
    if nv12.shape != out.shape:
        raise ValueError(f"NV12 upload: host buffer {nv12.shape} is not {out.shape}")
    check(rt.cudaMemcpy(out.ptr, nv12.ctypes.data, out.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice),
          "cudaMemcpy host to device")
    return out


def is_nv12(image: Any) -> bool:
    return getattr(image, "pixel_format", None) == NV12
