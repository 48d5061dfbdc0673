"""INT8 calibration input: frames from real encoded clips, batching, the calibrator's answers to
TensorRT, and the calibration cache file. No TensorRT needed: the calibrator's logic is plain
Python (CalibratorFeed); the IInt8EntropyCalibrator2 wrapper itself needs TensorRT 10."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import av
import numpy as np
import pytest

from pipeline.infer.tensorrt.calibrator import (CalibrationBatches, CalibrationCacheFile, CalibrationError, CalibratorFeed,
                                           calibration_frames, entropy_calibrator, split_quota)
from pipeline.preprocess.reference import PAD_VALUE, letterbox_reference


class RecordingUpload:
    """Stands in for device memory: keeps what was uploaded and answers a fixed pointer."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.freed = False

    def upload(self, array: np.ndarray) -> int:
        self.batches.append(array.copy())
        return 0xDEAD00

    def free(self) -> None:
        self.freed = True


def test_quota_splits_evenly() -> None:
    assert split_quota(500, 3) == [167, 167, 166]
    assert split_quota(2, 3) == [1, 1, 0]
    with pytest.raises(ValueError, match="sources is empty"):
        split_quota(5, 0)


def test_frames_from_clips_are_letterboxed_and_spread(make_clip: Callable[..., Path]) -> None:
    wide = make_clip("wide.mp4", width=160, height=90, frames=40)
    tall = make_clip("tall.mp4", width=96, height=128, frames=12)
    frames = list(calibration_frames([str(wide), str(tall)], 9, 64))
    assert len(frames) == 9
    assert all(f.shape == (3, 64, 64) and f.dtype == np.float32 for f in frames)
    pad = PAD_VALUE / 255.0
    assert np.allclose(frames[0][:, 0, :], pad)  # wide clip: grey bars top and bottom
    assert np.allclose(frames[-1][:, :, 0], pad)  # tall clip: grey bars left and right
    with av.open(str(wide)) as container:  # the clip's own frames, letterboxed the same way
        every = [letterbox_reference(f.to_ndarray(format="rgb24"), 64)[0] for f in container.decode(video=0)]
    picked = [next(i for i, e in enumerate(every) if np.array_equal(e, f)) for f in frames[:5]]
    assert picked == [0, 8, 16, 24, 32]  # 5 of 40 frames: evenly over the clip, not its first 5


def test_short_source_gives_what_it_has(make_clip: Callable[..., Path], caplog: pytest.LogCaptureFixture) -> None:
    clip = make_clip("short.mp4", frames=3)
    assert len(list(calibration_frames([str(clip)], 10, 64))) == 3
    assert "gave 3 of its 10 calibration frames" in caplog.text


def test_unopenable_source_names_its_index_and_hides_the_password(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(CalibrationError, match=r"model.calibration.sources\[0\] .*nope.mp4: cannot open"):
        list(calibration_frames([str(missing)], 4, 64))
    with pytest.raises(CalibrationError) as err:
        list(calibration_frames(["rtsp://op:hunter2@127.0.0.1:1/x"], 4, 64, open_timeout_s=2))
    assert "hunter2" not in str(err.value) and "rtsp://op:***@127.0.0.1:1/x" in str(err.value)


def test_synthetic_sources_are_refused() -> None:
    with pytest.raises(CalibrationError, match="synthetic sources cannot calibrate"):
        list(calibration_frames(["synthetic:640x480"], 4, 64))


def test_batches_are_full_and_of_the_engine_dtype() -> None:
    images = (np.full((3, 8, 8), i, np.float32) for i in range(11))
    batcher = CalibrationBatches(images, 4, np.float16)
    batches = list(batcher)
    assert [b.shape for b in batches] == [(4, 3, 8, 8), (4, 3, 8, 8)]
    assert all(b.dtype == np.float16 and b.flags.c_contiguous for b in batches)
    assert [float(b[0, 0, 0, 0]) for b in batches] == [0.0, 4.0]  # in order
    assert batcher.dropped == 3 and CalibrationBatches.expected(11, 4) == 2


def test_feed_serves_batches_then_none_and_reads_frames_lazily(tmp_path: Path) -> None:
    consumed: list[int] = []

    def images() -> Iterator[np.ndarray]:
        for i in range(8):
            consumed.append(i)
            yield np.full((3, 8, 8), i, np.float32)

    upload = RecordingUpload()
    feed = CalibratorFeed(CalibrationBatches(images(), 4), 4, CalibrationCacheFile(tmp_path / "c.calib"), upload)
    assert feed.get_batch_size() == 4
    assert consumed == []  # nothing decoded until TensorRT asks (it never asks if the cache is accepted)
    assert feed.get_batch(["images"]) == [0xDEAD00]
    assert feed.get_batch(["images"]) == [0xDEAD00]
    assert feed.get_batch(["images"]) is None
    assert feed.batches_served == 2 and [float(b[0, 0, 0, 0]) for b in upload.batches] == [0.0, 4.0]
    feed.close()
    assert upload.freed


def test_feed_refuses_networks_with_several_inputs(tmp_path: Path) -> None:
    feed = CalibratorFeed([], 1, CalibrationCacheFile(tmp_path / "c"), RecordingUpload())
    assert feed.get_batch(["a", "b"]) is None
    assert isinstance(feed.error, CalibrationError) and "['a', 'b']" in str(feed.error)


def test_read_errors_end_calibration_and_are_kept_for_the_builder(tmp_path: Path) -> None:
    def broken() -> Iterator[np.ndarray]:
        raise CalibrationError("model.calibration.sources[0] x.mp4: read failed: boom")
        yield  # pragma: no cover

    feed = CalibratorFeed(broken(), 2, CalibrationCacheFile(tmp_path / "c"), RecordingUpload())
    assert feed.get_batch(["images"]) is None
    assert "read failed: boom" in str(feed.error)


def test_calibration_cache_round_trip(tmp_path: Path) -> None:
    cache = CalibrationCacheFile(tmp_path / "sub" / "det.calib")
    feed = CalibratorFeed([], 2, cache, None)
    assert feed.read_calibration_cache() is None and not feed.cache_read
    table = b"TRT-100100-EntropyCalibration2\nimages: 3c010a14\noutput0: 3d4b2f1c\n"
    feed.write_calibration_cache(memoryview(table))  # TensorRT hands a buffer, not bytes
    assert cache.path.read_bytes() == table
    assert feed.read_calibration_cache() == table and feed.cache_read
    assert [p.name for p in cache.path.parent.iterdir()] == ["det.calib"]  # atomic: no temp left


def test_empty_cache_file_counts_as_missing(tmp_path: Path) -> None:
    (tmp_path / "c.calib").write_bytes(b"")
    assert CalibrationCacheFile(tmp_path / "c.calib").read() is None


def test_wrapper_needs_tensorrt_10s_calibrator_class(tmp_path: Path) -> None:
    no_calibrator = SimpleNamespace(__version__="11.4.0.106")  # TensorRT 11 removed it
    with pytest.raises(CalibrationError, match="TensorRT 11.4.0.106 has no IInt8EntropyCalibrator2"):
        entropy_calibrator(no_calibrator, CalibratorFeed([], 1, CalibrationCacheFile(tmp_path / "c"), None))


def test_wrapper_delegates_every_callback(tmp_path: Path) -> None:
    class Base:  # the shape of trt.IInt8EntropyCalibrator2: a class to subclass, with an __init__
        def __init__(self) -> None:
            self.base_initialised = True

    upload = RecordingUpload()
    feed = CalibratorFeed(CalibrationBatches([np.zeros((3, 4, 4), np.float32)] * 2, 2), 2,
                          CalibrationCacheFile(tmp_path / "w.calib"), upload)
    calib = entropy_calibrator(SimpleNamespace(IInt8EntropyCalibrator2=Base), feed)
    assert isinstance(calib, Base) and calib.base_initialised
    assert calib.get_batch_size() == 2 and calib.read_calibration_cache() is None
    assert calib.get_batch(["images"]) == [0xDEAD00] and calib.get_batch(["images"]) is None
    calib.write_calibration_cache(b"table")
    assert (tmp_path / "w.calib").read_bytes() == b"table"
