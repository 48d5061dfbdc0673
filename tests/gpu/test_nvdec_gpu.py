"""NVDEC decoding (decode: {device: gpu}) against PyAV's CPU decoding of the same real clips.

Frames must come out as device buffers (never host arrays), in the same order with the same pts,
and with the same pixels within colour-conversion tolerance (NVDEC's NV12->RGB kernel and FFmpeg's
swscale round and upsample chroma differently)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.support.gpu_env import skip_module_without_gpu

skip_module_without_gpu("PyNvVideoCodec")

from pipeline.config import CameraConfig, DecodeConfig  # noqa: E402
from pipeline.gpu.memory import DeviceImage, memory_type  # noqa: E402
from pipeline.frame import CameraState  # noqa: E402
from pipeline.sources.synthetic import SyntheticPattern  # noqa: E402
from tests.support.media import make_clip, make_resolution_change_clip  # noqa: E402
from tests.support.source_runner import SourceRunner  # noqa: E402

# mean |NVDEC - CPU| per channel value, and the 99th percentile (grey levels of 255)
MEAN_TOLERANCE = 2.0
P99_TOLERANCE = 16


def decode_all(clip: Path, device: str, camera_id: str = "cam") -> SourceRunner:
    runner = SourceRunner(CameraConfig(id=camera_id, url=str(clip), realtime=False),
                          decode=DecodeConfig(device=device)).start()
    runner.join(60.0)
    assert runner.states()[-1] is CameraState.EOF, runner.events
    return runner


def fallbacks(runner: SourceRunner) -> list[str]:
    return [e.reason for e in runner.events if "NVDEC unavailable" in e.reason]


def assert_on_device(image: object) -> None:
    assert isinstance(image, DeviceImage), type(image)
    assert hasattr(image, "__cuda_array_interface__") and not hasattr(image, "__array_interface__")
    assert memory_type(image.__cuda_array_interface__["data"][0]) == "device"


def rgb_with_matrix(clip: Path, matrix: str) -> list[np.ndarray]:
    """PyAV CPU decode converted to RGB with an explicit YUV matrix ("ITU601" or "ITU709")."""
    with av.open(str(clip)) as c:
        return [f.reformat(format="rgb24", src_colorspace=matrix).to_ndarray() for f in c.decode(video=0)]


def compare(gpu: SourceRunner, cpu: SourceRunner, clip: Path) -> str:
    """Same frames, pts and pixels. The pixels are compared with the CPU decode converted with
    BT.601 and with BT.709; the closer one is reported and must be BT.601, the CPU path's matrix for
    untagged streams (NVDEC itself would use BT.709 from 720p up; nvdec.py tags such streams)."""
    assert [f.index for f in gpu.frames] == [f.index for f in cpu.frames]
    assert [f.pts for f in gpu.frames] == pytest.approx([f.pts for f in cpu.frames], abs=1e-6)
    gpu_host = []
    for g, c in zip(gpu.frames, cpu.frames):
        assert_on_device(g.image)
        assert (g.width, g.height) == (c.width, c.height)
        gpu_host.append(g.image.to_host().astype(np.int16))
    results = {}
    for matrix in ("ITU601", "ITU709"):
        refs = rgb_with_matrix(clip, matrix)
        assert len(refs) == len(gpu_host)
        diffs = [np.abs(g - r.astype(np.int16)) for g, r in zip(gpu_host, refs)]
        results[matrix] = (max(float(d.mean()) for d in diffs), max(float(np.percentile(d, 99)) for d in diffs))
    matrix = min(results, key=lambda m: results[m][0])
    mean, p99 = results[matrix]
    print(f"NVDEC vs CPU ({gpu.frames[0].width}x{gpu.frames[0].height}) over {len(gpu_host)} frames: "
          f"{matrix}: mean |diff| max {mean:.3f}, p99 |diff| max {p99:.1f}; all: {results}")
    assert mean < MEAN_TOLERANCE and p99 <= P99_TOLERANCE, results
    assert matrix == "ITU601", results
    return matrix


@pytest.mark.parametrize("codec, name, size", [
    ("h264", "a.mp4", (640, 360)),   # avcC in MP4: needs the annex-B filter
    ("h264", "b.ts", (320, 240)),    # already annex-B (as RTSP delivers it)
    ("hevc", "c.mp4", (640, 360)),   # hvcC in MP4
    ("hevc", "d.mkv", (1920, 1080)),
])
def test_nvdec_frames_equal_cpu_frames(tmp_path: Path, codec: str, name: str, size: tuple[int, int]) -> None:
    clip = make_clip(tmp_path / name, size[0], size[1], 40, fps=25, codec=codec)
    gpu, cpu = decode_all(clip, "gpu"), decode_all(clip, "cpu")
    assert fallbacks(gpu) == []
    assert len(gpu.frames) == 40
    compare(gpu, cpu, clip)


def test_1080p_h264_clip_at_camera_bitrate(tmp_path: Path) -> None:
    clip = tmp_path / "cam1080.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"preset": "veryfast", "b": "4M", "g": "30"}
        pattern = SyntheticPattern(1920, 1080)
        rng = np.random.default_rng(0)
        for i in range(30):
            img = pattern.render(i)
            img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    gpu, cpu = decode_all(clip, "gpu"), decode_all(clip, "cpu")
    assert fallbacks(gpu) == [] and len(gpu.frames) == 30
    compare(gpu, cpu, clip)


def test_pixel_format_nvdec_does_not_take_falls_back_to_the_cpu(tmp_path: Path) -> None:
    clip = tmp_path / "yuv444.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv444p"
        pattern = SyntheticPattern(320, 240)
        for i in range(10):
            for p in stream.encode(av.VideoFrame.from_ndarray(pattern.render(i), format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    runner = decode_all(clip, "gpu")
    reasons = fallbacks(runner)
    assert len(reasons) == 1 and "yuv444p" in reasons[0], reasons
    assert len(runner.frames) == 10 and isinstance(runner.frames[0].image, np.ndarray)


@pytest.mark.xfail(reason="known limitation (H200, PyNvVideoCodec 2.2.4): after a mid-stream resolution "
                          "change NVDEC keeps delivering pictures of the first size", strict=False)
def test_resolution_change_mid_stream(tmp_path: Path) -> None:
    clip = make_resolution_change_clip(tmp_path / "reconf.ts", [(320, 240), (640, 480), (160, 120)], frames_each=10)
    gpu, cpu = decode_all(clip, "gpu"), decode_all(clip, "cpu")
    print("sizes", [(f.width, f.height) for f in gpu.frames][::5], fallbacks(gpu))
    assert [(f.width, f.height) for f in gpu.frames] == [(f.width, f.height) for f in cpu.frames]
    assert fallbacks(gpu) == []


def test_sixteen_cameras_in_parallel_each_get_their_own_frames(tmp_path: Path) -> None:
    clips = [make_clip(tmp_path / f"p{i}.mp4", 320, 240, 20 + i, fps=25, first_index=7 * i) for i in range(16)]
    runners = [SourceRunner(CameraConfig(id=f"c{i}", url=str(c), realtime=False),
                            decode=DecodeConfig(device="gpu")) for i, c in enumerate(clips)]
    for r in runners:
        r.start()
    for i, r in enumerate(runners):
        r.join(60.0)
        assert fallbacks(r) == []
        assert [f.index for f in r.frames] == list(range(20 + i))
        assert {f.camera_id for f in r.frames} == {f"c{i}"}
    # spot check: camera 5's frame 3 is pattern frame 38, the same picture as camera 4's frame 10
    # (different cameras, different decoders: no cross-talk between their buffers)
    a = runners[5].frames[3].image.to_host().astype(np.int16)
    b = runners[4].frames[10].image.to_host().astype(np.int16)
    c = runners[4].frames[11].image.to_host().astype(np.int16)
    assert np.abs(a - b).mean() < 3.0 < np.abs(a - c).mean() + 3.0


def test_a_looping_file_reuses_its_decoder_and_decodes_every_pass_in_full(tmp_path: Path) -> None:
    """nvdec.py keeps a cleanly flushed decoder for the camera's next session (creating one costs
    0.1-1 s with the GIL held). After the end-of-stream flush the reused decoder must decode the next
    pass completely and identically."""
    from pipeline.sources import nvdec

    clip = make_clip(tmp_path / "loop.mp4", 640, 360, 30, 30, "h264")
    created: list[int] = []
    original = nvdec._NvdecSession.__init__

    def counting(self, runtime, video, *args):  # type: ignore[no-untyped-def]
        parked = runtime._parked is not None
        original(self, runtime, video, *args)
        created.append(0 if parked else 1)

    nvdec._NvdecSession.__init__ = counting  # type: ignore[method-assign]
    try:
        def stop_after_three_passes(frame) -> None:  # type: ignore[no-untyped-def]
            if frame.index >= 3 * 30 - 1:
                runner.stop.set()

        runner = SourceRunner(CameraConfig(id="loop", url=str(clip), realtime=False, loop=True),
                              sink_hook=stop_after_three_passes, decode=DecodeConfig(device="gpu"))
        runner.start()
        runner.join(60.0)
    finally:
        nvdec._NvdecSession.__init__ = original  # type: ignore[method-assign]
    assert not fallbacks(runner)
    assert [f.index for f in runner.frames[:90]] == list(range(90))  # three full passes, nothing lost
    assert len(created) >= 3 and created[0] == 1 and sum(created[1:3]) == 0  # passes 2 and 3 reused it
    first, third = runner.frames[:30], runner.frames[60:90]
    for a, b in zip(first, third):  # the same picture on every pass
        np.testing.assert_array_equal(a.image.to_host(), b.image.to_host())


# IP cameras encode without B-frames (the bench clips too, scripts/assets/make_bench_media.py)
NO_B_FRAMES = {"h264": {"bf": "0"}, "hevc": {"x265-params": "log-level=error:bframes=0"}}


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_a_picture_comes_out_of_the_decode_call_that_took_its_packet(tmp_path: Path, codec: str) -> None:
    """Low display latency (nvdec.low_latency): a picture leaves Decode() one packet after its own.
    With PyNvVideoCodec's default it was two (this test failed so on the H200, session 6): a frame
    interval more of a live camera's latency before `captured_at` is stamped."""
    from pipeline.sources.decoding import open_video
    from pipeline.sources.nvdec import _NvdecRuntime, _NvdecSession

    clip = make_clip(tmp_path / f"live.{'mp4' if codec == 'h264' else 'mkv'}", 640, 360, 30, 30, codec,
                     options=NO_B_FRAMES[codec])
    video = open_video(str(clip))
    runtime = _NvdecRuntime(0)
    session = _NvdecSession(runtime, video, nv12=True)
    behind, packets, pictures = [], 0, 0
    try:
        for packet in video.container.demux(video.stream):
            for annex_b in session.annex_b(packet):
                packets += 1
                pictures += len(session.decode(annex_b))
                behind.append(packets - pictures)
        pictures += sum(1 for _ in session.flush())
    finally:
        session.close()
        runtime.close()
        video.close()
    print(f"{codec}: pictures behind their packets after each Decode(): {behind}")
    assert pictures == packets == 30
    assert max(behind) <= 1, behind  # the default: 2
