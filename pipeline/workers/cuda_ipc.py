"""NVDEC pictures handed from a decode worker to the daemon without leaving the GPU (CUDA IPC).

Worker side, DeviceExporter: a picture is a DeviceImage in its camera's pool (pipeline/gpu/memory.py),
i.e. inside one cudaMalloc allocation. The allocation's IPC handle is taken once and sent with its
first frame; later frames in it carry only its buffer id. The worker keeps the DeviceImage (so the
buffer stays out of its pool) until the daemon releases the frame.

Daemon side, DeviceImporter: opens each handle once (cuIpcOpenMemHandle) and wraps each frame in a
SharedDeviceImage pointing into the mapping. A mapping is closed when the worker says the buffer is
done (its camera ended) or the worker is gone, and no frame in it is left: images hold their mapping.

Why the buffer id and not the pointer as key: a freed buffer's address may come back for another
allocation, and a stale mapping would then show old pixels silently.

Ordering: the worker synchronises its decode stream before it sends a frame, so the pixels are
complete when the daemon sees the message (the same contract as DeviceImage: no stream attached).
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable

from pipeline.gpu.memory import DeviceImageView
from pipeline.gpu.runtime import CudaError, check
from pipeline.gpu.runtime import load_cuda_runtime as cuda_runtime
from pipeline.gpu.nv12 import DeviceNV12View
from pipeline.workers.messages import DeviceRef


def _driver() -> Any:
    from cuda.bindings import driver

    return driver


class DeviceExporter:
    """Worker side: DeviceRef for a picture's buffer, with the IPC handle the first time."""

    def __init__(self) -> None:
        self._driver = _driver()
        self._lock = threading.Lock()
        self._bases: dict[int, int] = {}  # buffer id -> allocation base pointer
        self._by_run: dict[int, set[int]] = {}  # StartCamera.run -> buffer ids its frames used

    def describe(self, image: Any, run: int) -> DeviceRef:
        drv = self._driver
        cai = image.__cuda_array_interface__
        ptr = int(cai["data"][0])
        buffer_id = int(check(drv.cuPointerGetAttribute(
            drv.CUpointer_attribute.CU_POINTER_ATTRIBUTE_BUFFER_ID, ptr), "cuPointerGetAttribute(BUFFER_ID)"))
        handle = None
        with self._lock:
            base = self._bases.get(buffer_id)
        if base is None:
            base = int(check(drv.cuMemGetAddressRange(ptr), "cuMemGetAddressRange")[0])
            raw = check(drv.cuIpcGetMemHandle(base), "cuIpcGetMemHandle").reserved
            handle = raw if isinstance(raw, bytes) else bytes(b & 0xFF for b in raw)  # char[64]
            with self._lock:
                self._bases[buffer_id] = base
                self._by_run.setdefault(run, set()).add(buffer_id)
        if getattr(image, "pixel_format", None) == "nv12":
            return DeviceRef(buffer_id, handle, ptr - base, (image.height, image.width, 3),
                             (image.pitch, image.matrix, image.full_range))
        shape = tuple(int(d) for d in cai["shape"])
        return DeviceRef(buffer_id, handle, ptr - base, (shape[0], shape[1], 3))

    def forget_run(self, run: int) -> tuple[int, ...]:
        """The buffers this camera run's frames used (its pool is closed): the daemon may unmap them."""
        with self._lock:
            ids = tuple(sorted(self._by_run.pop(run, ())))
            for buffer_id in ids:
                self._bases.pop(buffer_id, None)
        return ids


class _Mapping:
    """One worker allocation opened in this process; unmapped when the last reference goes."""

    def __init__(self, device_id: int, handle: bytes) -> None:
        drv = _driver()
        ipc_handle = drv.CUipcMemHandle()
        ipc_handle.reserved = handle
        flags = int(drv.CUipcMem_flags.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS.value)
        self.base = int(check(drv.cuIpcOpenMemHandle(ipc_handle, flags), "cuIpcOpenMemHandle"))
        self._close = weakref.finalize(self, _unmap, device_id, self.base)


def _unmap(device_id: int, base: int) -> None:
    rt = cuda_runtime()
    rt.cudaSetDevice(device_id)  # whichever thread drops the last frame: make the context current
    _driver().cuIpcCloseMemHandle(base)


class SharedDeviceImage(DeviceImageView):
    """A frame in a decode worker's GPU memory. `release()` runs when the image goes."""

    def __init__(self, device_id: int, mapping: _Mapping, ref: DeviceRef,
                 release: Callable[[], None] | None) -> None:
        super().__init__(device_id, mapping.base + ref.offset, ref.shape[0], ref.shape[1])
        self._mapping = mapping  # keeps the allocation mapped while this frame lives
        if release is not None:
            weakref.finalize(self, release)


class SharedDeviceNV12Image(DeviceNV12View):
    """An NV12 frame in a decode worker's GPU memory. `release()` runs when the image goes."""

    def __init__(self, device_id: int, mapping: _Mapping, ref: DeviceRef,
                 release: Callable[[], None] | None) -> None:
        pitch, matrix, full_range = ref.nv12
        super().__init__(device_id, mapping.base + ref.offset, ref.shape[1], ref.shape[0], pitch, matrix, full_range)
        self._mapping = mapping
        if release is not None:
            weakref.finalize(self, release)


class DeviceImporter:
    """Daemon side: one per worker process; used from its receiving thread."""

    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        self._mappings: dict[int, _Mapping] = {}
        self._context_ready = False

    def image(self, ref: DeviceRef, release: Callable[[], None] | None) -> SharedDeviceImage | SharedDeviceNV12Image:
        mapping = self._mappings.get(ref.buffer_id)
        if mapping is None:
            if ref.handle is None:
                raise CudaError(f"decode worker frame in unknown buffer {ref.buffer_id} (no IPC handle)")
            if not self._context_ready:
                rt = cuda_runtime()
                check(rt.cudaSetDevice(self.device_id), f"cudaSetDevice({self.device_id})")
                check(rt.cudaFree(0), "cudaFree(0)")  # creates the primary context if needed
                self._context_ready = True
            mapping = self._mappings[ref.buffer_id] = _Mapping(self.device_id, ref.handle)
        if ref.nv12 is not None:
            return SharedDeviceNV12Image(self.device_id, mapping, ref, release)
        return SharedDeviceImage(self.device_id, mapping, ref, release)

    def forget(self, buffer_ids: tuple[int, ...]) -> None:
        for buffer_id in buffer_ids:
            self._mappings.pop(buffer_id, None)

    def forget_all(self) -> None:
        self._mappings.clear()
