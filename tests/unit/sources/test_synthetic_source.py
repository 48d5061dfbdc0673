"""SyntheticSource: `synthetic:WIDTHxHEIGHT@FPS` moving rectangles, deterministic and paced."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import CameraConfig
from pipeline.frame import CameraState
from pipeline.sources.synthetic import SyntheticPattern, SyntheticSpec, parse_synthetic_url
from tests.support.source_runner import SourceRunner


@pytest.mark.parametrize("url, spec", [
    ("synthetic:1280x720@25", SyntheticSpec(1280, 720, 25.0)),
    ("synthetic:64x48@29.97", SyntheticSpec(64, 48, 29.97)),
])
def test_parses_size_and_rate(url, spec):
    assert parse_synthetic_url(url) == spec


@pytest.mark.parametrize("url, problem", [
    ("synthetic:1280x720", "expected synthetic:WIDTHxHEIGHT@FPS"),
    ("synthetic:axb@25", "expected synthetic:WIDTHxHEIGHT@FPS"),
    ("synthetic:0x720@25", "width and height must be 2..8192"),
    ("synthetic:64x48@0", "fps must be in (0, 1000]"),
])
def test_rejects_bad_urls_with_the_expected_form(url, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace("]", r"\]")):
        parse_synthetic_url(url)


def test_pattern_is_deterministic_and_moves():
    a, b = SyntheticPattern(96, 64), SyntheticPattern(96, 64)
    assert np.array_equal(a.render(17), b.render(17))
    assert not np.array_equal(a.render(17), a.render(18))
    frame = a.render(0)
    assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8
    assert a.render(3) is not a.render(3)  # a fresh array each time: sinks may keep them


def test_source_delivers_paced_frames_until_stopped():
    runner = SourceRunner(CameraConfig(id="syn", url="synthetic:64x48@50")).start()
    runner.wait_for_frames(10, timeout_s=5)
    assert runner.stop_and_join(timeout_s=1.0) < 1.0
    frames = runner.frames
    assert runner.states() == [CameraState.STARTING, CameraState.UP, CameraState.STOPPED]
    assert [f.index for f in frames] == list(range(len(frames)))
    assert frames[3].pts == pytest.approx(3 / 50)
    assert frames[9].captured_at - frames[0].captured_at >= 9 / 50 * 0.9
    assert np.array_equal(frames[5].image, SyntheticPattern(64, 48).render(5))


def test_unpaced_source_runs_as_fast_as_the_sink_accepts():
    def stop_at_200(frame):
        if frame.index >= 199:
            runner.stop.set()

    runner = SourceRunner(CameraConfig(id="syn", url="synthetic:32x32@1", realtime=False),
                          sink_hook=stop_at_200, keep_images=False)
    runner.start()  # after the assignment: the hook uses `runner`
    runner.join(timeout_s=5)  # 200 frames at "1 fps" would take minutes if paced
    assert len(runner.frames) == 200


def test_bad_url_goes_down_with_the_reason():
    runner = SourceRunner(CameraConfig(id="syn", url="synthetic:big@fast")).start()
    runner.join(timeout_s=2)
    assert runner.states() == [CameraState.STARTING, CameraState.DOWN]
    assert "expected synthetic:WIDTHxHEIGHT@FPS" in runner.events[-1].reason
