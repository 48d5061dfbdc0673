"""CUDA IPC as the decode workers use it (pipeline/workers/cuda_ipc.py): pictures in one process's
pooled buffers, small and 1080p, read in another process, byte for byte."""
from __future__ import annotations

import multiprocessing

from tests.support.gpu_env import skip_module_without_gpu

skip_module_without_gpu()

from pipeline.gpu.memory import DeviceBufferPool, DeviceImage, check, cuda_runtime  # noqa: E402
from pipeline.workers.cuda_ipc import DeviceExporter  # noqa: E402
from tests.support.ipc_child import read_pictures  # noqa: E402

SIZES = [(48, 64)] * 5 + [(240, 320)] * 4 + [(1080, 1920)] * 3


def read_in_child(refs: list) -> object:
    """What read_pictures sends back from a spawned process given `refs`."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=read_pictures, args=(refs, theirs))
    child.start()
    try:
        assert ours.poll(120), "the reading process sent nothing"
        return ours.recv()
    finally:
        child.join(30)


def read_in_another_process() -> tuple[list, list]:
    """Fill pictures with 1, 2, 3, ... in this process; (what was written, what another process read)."""
    rt = cuda_runtime()
    pool = DeviceBufferPool(0)
    exporter = DeviceExporter()
    images, refs = [], []
    for value, (h, w) in enumerate(SIZES, start=1):
        image = DeviceImage(pool, h, w)
        check(rt.cudaMemset(image.ptr, value, image.nbytes), "cudaMemset")
        images.append(image)
        refs.append(exporter.describe(image, 1))
    check(rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
    got = read_in_child(refs)
    assert not isinstance(got, str), got
    return [(v, v) for v in range(1, len(SIZES) + 1)], got


def test_pooled_pictures_read_the_same_in_another_process() -> None:
    """Small pictures too: each is opened at its allocation's base plus its offset, whatever the
    driver packs together (cuMemGetAddressRange on the worker side)."""
    written, read = read_in_another_process()
    assert read == written


def test_nv12_surfaces_read_the_same_in_another_process() -> None:
    """NV12 pictures (decode.nvdec_output nv12), odd sizes too: the reference carries pitch,
    matrix and range; the other process maps the whole surface, luma and chroma."""
    from pipeline.gpu.nv12 import DeviceNV12Image

    rt = cuda_runtime()
    pool = DeviceBufferPool(0)
    exporter = DeviceExporter()
    images, refs = [], []
    for value, (w, h) in enumerate([(64, 48), (1279, 719), (1920, 1080)], start=1):
        image = DeviceNV12Image(pool, w, h, "bt709", value == 2)
        check(rt.cudaMemset(image.ptr, value, image.nbytes), "cudaMemset")
        images.append(image)
        refs.append(exporter.describe(image, 1))
    check(rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
    assert [r.nv12 for r in refs] == [(64, "bt709", False), (1280, "bt709", True), (1920, "bt709", False)]
    got = read_in_child(refs)
    assert got == [(1, 1), (2, 2), (3, 3)], got
