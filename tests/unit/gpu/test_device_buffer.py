"""__cuda_array_interface__ parsing and batch splitting by pointer arithmetic.

These objects only describe memory (no CUDA here); nothing dereferences the pointers. The copy
and stream-wait paths need a GPU and cuda-python and are not exercised on this machine.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.gpu.device_buffer import device_view, split


class Described:
    def __init__(self, shape: tuple[int, ...], typestr: str = "<f2", strides: Any = None, ptr: int = 0x10000):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (ptr, False),
                                         "strides": strides, "version": 3, "stream": None}


def test_view_reads_pointer_shape_and_dtype() -> None:
    obj = Described((5, 3, 8, 8), "<f2")
    v = device_view(obj, (5, 3, 8, 8), "m.onnx")
    assert (v.ptr, v.shape, v.dtype, v.nbytes, v.owner) == (0x10000, (5, 3, 8, 8), np.dtype(np.float16),
                                                            5 * 3 * 8 * 8 * 2, obj)


def test_split_offsets_pointers_by_whole_images() -> None:
    v = device_view(Described((5, 3, 8, 8), "<f4"), (5, 3, 8, 8), "m.onnx")
    image = 3 * 8 * 8 * 4
    parts = split(v, 2)
    assert [(p.ptr - 0x10000, p.shape, n) for p, n in parts] == [
        (0, (2, 3, 8, 8), 2), (2 * image, (2, 3, 8, 8), 2), (4 * image, (1, 3, 8, 8), 1)]


def test_contiguous_strides_are_accepted_others_refused() -> None:
    device_view(Described((2, 3, 4, 4), "<f4", strides=(192, 64, 16, 4)), (2, 3, 4, 4), "m.onnx")
    with pytest.raises(ValueError, match="m.onnx: device input must be C-contiguous"):
        device_view(Described((2, 3, 4, 4), "<f4", strides=(192, 64, 32, 8)), (2, 3, 4, 4), "m.onnx")


def test_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"device input is \[2, 3, 4, 4\], model wants \[3, 3, 4, 4\]"):
        device_view(Described((2, 3, 4, 4)), (3, 3, 4, 4), "m.onnx")


def test_without_libcuda_the_lock_keeping_copy_hands_over_to_the_usual_path() -> None:
    # No driver on this machine: the inference thread's copy must fall back (to cuda-python, which
    # then reports what is missing), never fail because the lock-keeping library is absent.
    import ctypes.util

    from pipeline.gpu import device_buffer
    from pipeline.gpu.lock_held import LockHeldDriver
    from pipeline.gpu.runtime import CudaError

    if ctypes.util.find_library("cuda"):
        pytest.skip("libcuda is installed here")
    with pytest.raises(CudaError, match="libcuda.so.1 cannot be loaded"):
        LockHeldDriver()
    assert LockHeldDriver.shared() is None and LockHeldDriver._missing  # tried once, not on every call
    assert device_buffer._queue_with_the_lock_held(0x1000, 0x2000, 64, 7) is False
