"""`decode: {device: gpu}` where NVDEC cannot serve a camera: the camera decodes on the CPU, says so
once (log + status event), and delivers every frame. On a box without a GPU (or without
PyNvVideoCodec) this is the path every gpu camera takes; tests/gpu covers the NVDEC side."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import CameraConfig, DecodeConfig
from pipeline.frame import CameraState
from pipeline.sources.nvdec import CpuPictureDecoder, NvdecPictureDecoder, picture_decoder
from tests.support.source_runner import SourceRunner


def nvdec_works() -> bool:
    try:
        import PyNvVideoCodec  # noqa: F401
        from cuda.bindings import runtime
    except Exception:  # noqa: BLE001 - any import failure means: no NVDEC here
        return False
    err, count = runtime.cudaGetDeviceCount()
    return int(err) == 0 and count > 0


def fallback_events(runner: SourceRunner) -> list[str]:
    return [e.reason for e in runner.events if "NVDEC unavailable" in e.reason]


def test_cpu_device_gets_the_plain_pyav_decoder() -> None:
    assert isinstance(picture_decoder(DecodeConfig(), "c", lambda r: None), CpuPictureDecoder)
    assert isinstance(picture_decoder(DecodeConfig(device="gpu"), "c", lambda r: None), NvdecPictureDecoder)


@pytest.mark.skipif(nvdec_works(), reason="this box has NVDEC: tests/gpu checks the GPU path")
def test_gpu_decode_without_nvdec_falls_back_once_and_delivers_every_frame(make_clip) -> None:
    clip = make_clip("gpu.mp4", width=160, height=120, frames=12)
    cam = CameraConfig(id="cam-g", url=str(clip), realtime=False, loop=True)
    runner = SourceRunner(cam, decode=DecodeConfig(device="gpu")).start()
    assert runner.wait_until(lambda: len(runner.frames) >= 30, 10.0)  # two reopen cycles (loop)
    runner.stop.set()
    runner.join(5.0)
    first = runner.frames[0].image
    assert isinstance(first, np.ndarray) and first.shape == (120, 160, 3) and first.dtype == np.uint8
    assert [f.index for f in runner.frames[:30]] == list(range(30))
    reasons = fallback_events(runner)
    assert len(reasons) == 1, reasons  # one warning, not one per reopen
    assert "decoding on the CPU" in reasons[0] and "cuda:0" in reasons[0]
    states = runner.states()
    assert states[:2] == [CameraState.STARTING, CameraState.STARTING] and CameraState.UP in states


@pytest.mark.parametrize("codec, why", [("mpeg4", "codec mpeg4 is not H.264 or HEVC")])
def test_codec_nvdec_cannot_decode_falls_back_with_the_reason(make_clip, codec: str, why: str) -> None:
    clip = make_clip("m4.avi", width=160, height=120, frames=6, codec=codec)
    runner = SourceRunner(CameraConfig(id="cam-m", url=str(clip), realtime=False),
                          decode=DecodeConfig(device="gpu")).start()
    runner.join(10.0)
    assert runner.states()[-1] is CameraState.EOF
    assert len(runner.frames) == 6
    reasons = fallback_events(runner)
    assert len(reasons) == 1 and why in reasons[0], reasons  # the codec is checked before the GPU


class FakeRuntime:
    """Stands in for _NvdecRuntime (no GPU here): records its close."""

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_close_hands_the_gpu_teardown_to_retire_once() -> None:
    retired: list = []
    decoder = NvdecPictureDecoder(0, "c", lambda r: None, retire=retired.append)
    runtime = decoder._runtime = FakeRuntime()  # as after the first NVDEC session
    decoder.close()
    assert runtime.closed == 0 and len(retired) == 1  # nothing torn down on the camera's thread
    decoder.close()
    assert len(retired) == 1
    retired[0]()
    assert runtime.closed == 1


def test_without_retire_close_tears_down_at_once() -> None:
    decoder = NvdecPictureDecoder(0, "c", lambda r: None)
    runtime = decoder._runtime = FakeRuntime()
    decoder.close()
    assert runtime.closed == 1


def test_a_discarded_decoder_lives_until_the_next_session_or_the_teardown() -> None:
    """A decoder cut off mid-stream is kept (not destroyed on the camera's thread as it stops) and
    goes when the next session takes one, or with the rest at close()."""
    from pipeline.sources.nvdec import _NvdecRuntime

    class Device:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def __getattr__(self, name: str):
            return lambda *a: self.calls.append(name)

    runtime = _NvdecRuntime.__new__(_NvdecRuntime)  # its __init__ needs a GPU
    device = Device()
    runtime.gpu_id, runtime.rt, runtime.pool, runtime._stream, runtime._driver = 0, device, device, device, device
    runtime._device, runtime._parked, runtime._discarded = 0, None, None
    runtime.discard_decoder("cut-off")
    assert runtime._discarded == "cut-off"
    assert runtime.take_decoder(("h264", 1920, 1088, True)) is None and runtime._discarded is None
    runtime.park_decoder(("h264", 1920, 1088, True), "clean")
    runtime.discard_decoder("cut-off-2")
    runtime.close()
    assert runtime._parked is None and runtime._discarded is None
    assert device.calls == ["cudaSetDevice", "close", "close", "cuDevicePrimaryCtxRelease"]


def test_decoders_are_created_with_low_display_latency_where_the_library_has_it() -> None:
    """PyNvVideoCodec's default returns a picture two packets after its own, LOW one (measured on the
    H200); versions without the setting get no unknown keyword."""
    from types import SimpleNamespace

    from pipeline.sources.nvdec import low_latency

    low = object()
    nvc = SimpleNamespace(DisplayDecodeLatencyType=SimpleNamespace(NATIVE=object(), LOW=low, ZERO=object()))
    assert low_latency(nvc) == {"latency": low}
    assert low_latency(SimpleNamespace()) == {}
