"""FileSource on real encoded clips (H.264 via PyAV) and broken files."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import CameraConfig, DecodeConfig
from pipeline.frame import CameraState
from tests.support.media import corrupt_copy, make_audio_only, make_resolution_change_clip
from tests.support.source_runner import SourceRunner

MEGAMIND_BUGY = Path("/usr/share/doc/opencv-doc/examples/data/Megamind_bugy.avi")


def camera(url: Path | str, **kw: object) -> CameraConfig:
    return CameraConfig(id="cam-1", url=str(url), **kw)  # type: ignore[arg-type]


def run_to_end(cam: CameraConfig, timeout_s: float = 10.0, **kw: object) -> SourceRunner:
    runner = SourceRunner(cam, **kw).start()  # type: ignore[arg-type]
    runner.join(timeout_s)
    return runner


def test_decodes_every_frame_as_rgb_with_counting_indices_and_rising_pts(make_clip):
    clip = make_clip("clip.mp4", width=160, height=120, frames=30, fps=30)
    runner = run_to_end(camera(clip, realtime=False))

    assert runner.states() == [CameraState.STARTING, CameraState.UP, CameraState.EOF]
    assert [f.index for f in runner.frames] == list(range(30))
    first = runner.frames[0]
    assert first.image.shape == (120, 160, 3) and first.image.dtype == np.uint8
    assert (first.width, first.height, first.camera_id) == (160, 120, "cam-1")
    pts = [f.pts for f in runner.frames]
    assert pts[0] == pytest.approx(0.0)
    assert all(b > a for a, b in zip(pts, pts[1:])), pts  # B-frames come out in display order
    assert pts[-1] == pytest.approx(29 / 30, abs=1e-3)
    # the shapes move: consecutive pictures differ
    assert not np.array_equal(runner.frames[0].image, runner.frames[10].image)
    # rectangles are pure colours on a gradient: RGB order survived (first rectangle is red)
    assert runner.frames[0].image[..., 0].max() > 200
    assert runner.metrics.value("pipeline_frames_decoded_total", camera="cam-1") == 30
    assert runner.metrics.value("pipeline_camera_up", camera="cam-1") == 0
    assert runner.metrics.value("pipeline_decode_errors_total", camera="cam-1") == 0


def test_realtime_paces_frames_at_the_native_rate(make_clip):
    clip = make_clip("rt.mp4", frames=16, fps=20)  # 15 frame intervals = 0.75 s
    t0 = time.monotonic()
    runner = run_to_end(camera(clip, realtime=True))
    elapsed = time.monotonic() - t0

    assert len(runner.frames) == 16
    spread = runner.frames[-1].captured_at - runner.frames[0].captured_at
    assert spread >= 0.75 * 0.95, spread
    assert elapsed < 5.0  # generous: the box is shared
    # no burst: the first half of the frames takes about half of the time
    mid = runner.frames[8].captured_at - runner.frames[0].captured_at
    assert mid >= 0.4 * 0.95, mid


def test_fast_mode_waits_for_a_blocking_sink(make_clip):
    """realtime: false runs as fast as the sink accepts: a slow sink slows the source down."""
    clip = make_clip("bp.mp4", frames=10)
    runner = run_to_end(camera(clip, realtime=False), sink_hook=lambda frame: time.sleep(0.03))
    spread = runner.frames[-1].captured_at - runner.frames[0].captured_at
    assert len(runner.frames) == 10 and spread >= 9 * 0.03 * 0.95


def test_loop_restarts_the_file_and_keeps_counting(make_clip):
    clip = make_clip("loop.mp4", frames=12)
    stop_after = 30

    def stop_at_30(frame):
        if frame.index + 1 >= stop_after:
            runner.stop.set()

    runner = SourceRunner(camera(clip, realtime=False, loop=True), sink_hook=stop_at_30)
    runner.start()  # after the assignment: the hook uses `runner`
    runner.join(10)

    assert runner.states() == [CameraState.STARTING, CameraState.UP, CameraState.STOPPED]
    assert [f.index for f in runner.frames] == list(range(stop_after))
    # each pass replays the file: pts restart, the pictures repeat
    assert [f.pts for f in runner.frames[12:24]] == [f.pts for f in runner.frames[:12]]
    assert np.array_equal(runner.frames[13].image, runner.frames[1].image)


def test_realtime_loop_continues_the_schedule_across_the_restart(make_clip):
    clip = make_clip("rtloop.mp4", frames=5, fps=25)

    def stop_at_12(frame):
        if frame.index >= 11:
            runner.stop.set()

    runner = SourceRunner(camera(clip, realtime=True, loop=True), sink_hook=stop_at_12)
    runner.start()
    runner.join(10)
    gaps = np.diff([f.captured_at for f in runner.frames])
    assert len(runner.frames) == 12
    # the restart after frame 4 is paced like any other frame, not skipped or doubled
    assert gaps[4] >= 0.04 * 0.8 and gaps[9] >= 0.04 * 0.8, gaps


def test_corrupt_packets_are_skipped_and_counted(make_clip, tmp_path):
    clip = make_clip("good.mp4", frames=50, fps=25)
    broken = corrupt_copy(clip, tmp_path / "broken.mp4")
    runner = run_to_end(camera(broken, realtime=False))

    assert runner.states() == [CameraState.STARTING, CameraState.UP, CameraState.EOF]
    errors = runner.metrics.value("pipeline_decode_errors_total", camera="cam-1")
    assert errors > 0
    assert 0 < len(runner.frames) < 50
    assert [f.index for f in runner.frames] == list(range(len(runner.frames)))


@pytest.mark.skipif(not MEGAMIND_BUGY.exists(), reason="opencv-doc sample not installed")
def test_opencv_megamind_bugy_plays_to_a_clean_eof():
    # FFmpeg 8 decodes this "buggy" MPEG-4 AVI without errors: 270 frames, 720x528, then EOF.
    runner = run_to_end(camera(MEGAMIND_BUGY, realtime=False), keep_images=False, timeout_s=15)
    assert runner.states() == [CameraState.STARTING, CameraState.UP, CameraState.EOF]
    assert len(runner.frames) == 270
    assert (runner.frames[0].width, runner.frames[0].height) == (720, 528)


def test_resolution_change_mid_stream_just_changes_frame_size(tmp_path):
    clip = make_resolution_change_clip(tmp_path / "rc.ts", [(160, 120), (96, 64)], frames_each=10)
    runner = run_to_end(camera(clip, realtime=False))

    assert runner.states()[-1] is CameraState.EOF
    sizes = [(f.width, f.height) for f in runner.frames]
    assert sizes[:10] == [(160, 120)] * 10 and sizes[-10:] == [(96, 64)] * 10
    assert all(f.image.shape == (f.height, f.width, 3) for f in runner.frames)


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "missing.mp4"


def _zero_length(tmp_path: Path) -> Path:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return path


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return path


def _audio_only(tmp_path: Path) -> Path:
    return make_audio_only(tmp_path / "tone.wav")


@pytest.mark.parametrize("make_input, reason", [
    (_missing, "cannot open: No such file or directory"),
    (_zero_length, "cannot open: Invalid data found when processing input"),
    (_random_bytes, "cannot open: Invalid data found when processing input"),
    (_audio_only, "cannot open: no video stream (streams: audio)"),
])
def test_unopenable_file_goes_down_with_a_clear_reason(tmp_path, make_input, reason):
    runner = run_to_end(camera(make_input(tmp_path), realtime=False), timeout_s=5)
    assert runner.states() == [CameraState.STARTING, CameraState.DOWN]
    assert runner.events[-1].reason == reason
    assert runner.frames == []


def test_stop_is_honoured_within_a_second_while_pacing(make_clip):
    clip = make_clip("long.mp4", frames=60, fps=2)  # 30 s of video
    runner = SourceRunner(camera(clip, realtime=True)).start()
    runner.wait_for_frames(1, timeout_s=5)
    took = runner.stop_and_join(timeout_s=1.0)
    assert took < 1.0
    assert runner.states()[-1] is CameraState.STOPPED
    assert runner.events[-1].reason == "stop requested"


def test_a_failing_sink_becomes_down_not_an_exception(make_clip):
    clip = make_clip("sink.mp4", frames=5)

    def broken_sink(frame):
        raise RuntimeError("queue closed")

    runner = run_to_end(camera(clip, realtime=False), sink_hook=broken_sink)
    assert runner.states() == [CameraState.STARTING, CameraState.UP, CameraState.DOWN]
    assert runner.events[-1].reason == "source failed: RuntimeError: queue closed"


def test_status_events_carry_camera_and_unix_time(make_clip):
    clip = make_clip("ev.mp4", frames=3)
    before = time.time()
    runner = run_to_end(camera(clip, realtime=False))
    assert all(e.camera_id == "cam-1" and before <= e.at <= time.time() for e in runner.events)
    assert runner.events[0].reason == f"opening {clip}"


def test_gpu_decode_request_falls_back_to_the_cpu_without_a_gpu(make_clip):
    clip = make_clip("gpu.mp4", frames=6)
    runner = run_to_end(camera(clip, realtime=False), decode=DecodeConfig(device="gpu"))
    assert runner.states()[-1] is CameraState.EOF
    assert len(runner.frames) == 6 and runner.frames[0].image.shape == (120, 160, 3)


def test_many_sources_in_parallel_threads_do_not_interfere(make_clip):
    clips = [make_clip(f"p{i}.mp4", frames=8 + i) for i in range(3)]
    runners = [SourceRunner(CameraConfig(id=f"c{i}", url=str(c), realtime=False)) for i, c in enumerate(clips)]
    for r in runners:
        r.start()
    for i, r in enumerate(runners):
        r.join(10)
        assert [f.index for f in r.frames] == list(range(8 + i))
        assert {f.camera_id for f in r.frames} == {f"c{i}"}


def test_a_looping_one_frame_file_is_paced_at_its_frame_rate(make_clip):
    """Issue 23 item 8: a still (one-frame) file with loop: true was decoded ~830 times a second."""
    clip = make_clip("still.mp4", width=64, height=48, frames=1, fps=10)
    runner = SourceRunner(camera(clip, loop=True), keep_images=False).start()
    try:
        runner.wait_for_frames(1, timeout_s=10)
        first = len(runner.frames)
        time.sleep(1.5)
        delivered = len(runner.frames) - first
    finally:
        runner.stop.set()
        runner.join(5)
    assert 8 <= delivered <= 20, delivered  # ~15 at 10 fps; unpaced it would be hundreds


EMFILE_SCRIPT = r"""
import os, resource, sys, time
from pipeline.config import CameraConfig
from pipeline.frame import CameraState
from tests.support.source_runner import SourceRunner

runner = SourceRunner(CameraConfig(id="cam-1", url=sys.argv[1], loop=True), keep_images=False)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
hogs = []
try:
    while True:
        hogs.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
runner.start()
runner.wait_for_state(CameraState.RECONNECTING, timeout_s=10)
for fd in hogs:
    os.close(fd)
up = runner.wait_for_state(CameraState.UP, timeout_s=10)
runner.wait_for_frames(5, timeout_s=10)
runner.stop.set()
runner.join(5)
print([e.state.value for e in runner.events][:4])
print(runner.events[1].reason)
"""


def test_a_file_camera_out_of_fds_waits_and_comes_back(make_clip):
    """Issue 23 item 3: EMFILE (fds used up by something else) used to put a file camera down for good."""
    import subprocess
    import sys

    clip = make_clip("clip.mp4", width=64, height=48, frames=5, fps=25)
    repo = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", EMFILE_SCRIPT, str(clip)], cwd=repo, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    states, reason = out.stdout.splitlines()[-2:]
    assert states.startswith("['starting', 'reconnecting'") and "'up'" in states, states
    assert reason.startswith("cannot open: Too many open files; retrying in 0.5s"), reason


def test_an_open_that_blocks_is_reported_within_timeout_s(tmp_path: Path) -> None:
    """Every camera state has a deadline: a FIFO with no writer blocks open() in the kernel, where no
    FFmpeg timeout reaches; the camera says so after timeout_s instead of 'starting' for ever."""
    import os

    fifo = tmp_path / "cam.fifo"
    os.mkfifo(fifo)
    runner = SourceRunner(camera(fifo, timeout_s=1.0)).start()
    try:
        event = runner.wait_for_state(CameraState.STARTING, timeout_s=5, after=1)
        assert event.reason.startswith("still opening after 1 s"), event.reason
    finally:
        runner.stop.set()
        os.close(os.open(fifo, os.O_WRONLY))  # a writer that leaves at once: the open returns, EOF
        assert runner.join(10) < 10
    assert runner.states()[-1] in (CameraState.DOWN, CameraState.STOPPED)
