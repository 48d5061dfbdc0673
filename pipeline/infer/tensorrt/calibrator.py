"""INT8 calibration for backend tensorrt: letterboxed frames from files or cameras, batched for
TensorRT's entropy calibrator, with a calibration cache file so calibration runs once.

The calibrator's logic (`CalibratorFeed`) is plain Python; `entropy_calibrator` wraps it in the
installed TensorRT's IInt8EntropyCalibrator2 (TensorRT 10; removed in TensorRT 11, which only
accepts explicitly quantized Q/DQ models). Frames are read lazily: when TensorRT accepts the
calibration cache it never asks for a batch, and no video is decoded.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

import numpy as np

from pipeline.infer.tensorrt.engine_cache import atomic_write_bytes
from pipeline.observe.redaction import redact_url
from pipeline.preprocess import letterbox_reference  # the model is fed what the preprocessor makes

log = logging.getLogger(__name__)


class CalibrationError(RuntimeError):
    """Calibration input could not be read; the message is one line naming the source."""


def split_quota(total: int, parts: int) -> list[int]:
    """`total` frames over `parts` sources as evenly as possible (earlier sources get the extra)."""
    if parts < 1:
        raise ValueError("model.calibration.sources is empty")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def calibration_frames(sources: Sequence[str], frames: int, input_size: int,
                       open_timeout_s: float = 10.0) -> Iterator[np.ndarray]:
    """Letterboxed 3xSxS float32 images (0..1), `frames` in all, spread over `sources`.

    Files are sampled evenly over their length; live streams give consecutive frames.
    Camera ids were already replaced by their URLs when the config was loaded.
    """
    from pipeline.sources import SampleError, sample_pictures  # the public sources API, lazily: PyAV

    produced = 0
    for index, (url, quota) in enumerate(zip(sources, split_quota(frames, len(sources)))):
        where = f"model.calibration.sources[{index}] {redact_url(url)}"
        if quota == 0:
            continue
        if url.startswith("synthetic:"):
            raise CalibrationError(f"{where}: synthetic sources cannot calibrate a model; name a video or camera")
        taken = 0
        try:
            for picture in sample_pictures(url, quota, open_timeout_s):
                yield letterbox_reference(picture, input_size)[0]
                taken += 1
        except SampleError as exc:
            raise CalibrationError(f"{where}: {exc}") from None
        if taken < quota:
            log.warning("%s: gave %d of its %d calibration frames", where, taken, quota)
        produced += taken
    if produced == 0:
        raise CalibrationError("model.calibration.sources gave no frames")


class CalibrationBatches:
    """Groups images into [B, 3, S, S] arrays of `dtype`. Only full batches: TensorRT calibrates
    at one fixed shape, so a short last batch is dropped (and logged)."""

    def __init__(self, images: Iterable[np.ndarray], batch_size: int, dtype: Any = np.float32) -> None:
        if batch_size < 1:
            raise ValueError(f"calibration batch_size must be >= 1, got {batch_size}")
        self._images = images
        self.batch_size = batch_size
        self.dtype = np.dtype(dtype)
        self.dropped = 0

    @staticmethod
    def expected(frames: int, batch_size: int) -> int:
        return frames // batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        for image in self._images:
            pending.append(image)
            if len(pending) == self.batch_size:
                yield np.ascontiguousarray(np.stack(pending), dtype=self.dtype)
                pending = []
        self.dropped = len(pending)
        if pending:
            log.info("calibration: dropped %d frame(s) that did not fill a batch of %d", len(pending),
                     self.batch_size)


class CalibrationCacheFile:
    """TensorRT's calibration table on disk: read if present, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> bytes | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data or None

    def write(self, data: bytes) -> None:
        atomic_write_bytes(self.path, bytes(data))


class DeviceUpload(Protocol):
    """Device memory for one calibration batch (trt_cuda.DeviceBuffer in production)."""

    def upload(self, array: np.ndarray) -> int: ...

    def free(self) -> None: ...


class CalibratorFeed:
    """What IInt8EntropyCalibrator2 asks for, without TensorRT: batch size, the next batch as a
    device pointer (None at the end), and the calibration cache."""

    def __init__(self, batches: Iterable[np.ndarray], batch_size: int, cache: CalibrationCacheFile,
                 device: DeviceUpload | None) -> None:
        self._batches = batches
        self._iter: Iterator[np.ndarray] | None = None
        self._batch_size = batch_size
        self.cache = cache
        self._device = device
        self.batches_served = 0
        self.cache_read = False
        self.error: BaseException | None = None  # raised by the builder after TensorRT returns

    def get_batch_size(self) -> int:
        return self._batch_size

    def get_batch(self, names: Sequence[str]) -> list[int] | None:
        if len(names) != 1:
            self.error = CalibrationError(f"calibration feeds one image input; the network has {list(names)}")
            return None
        if self._iter is None:
            self._iter = iter(self._batches)
        try:
            batch = next(self._iter)
        except StopIteration:
            return None
        except Exception as exc:  # noqa: BLE001 - must not cross into TensorRT; re-raised after the build
            self.error = exc
            return None
        if batch.shape[0] != self._batch_size:
            self.error = CalibrationError(f"calibration batch has {batch.shape[0]} images, expected {self._batch_size}")
            return None
        if self._device is None:
            self.error = CalibrationError("no device buffer for calibration batches")
            return None
        pointer = self._device.upload(batch)
        self.batches_served += 1
        if self.batches_served % 10 == 0:
            log.info("calibration: %d batches of %d", self.batches_served, self._batch_size)
        return [pointer]

    def read_calibration_cache(self) -> bytes | None:
        data = self.cache.read()
        self.cache_read = data is not None
        if data is not None:
            log.info("calibration: using cache %s", self.cache.path)
        return data

    def write_calibration_cache(self, data: Any) -> None:
        self.cache.write(bytes(data))
        log.info("calibration: wrote cache %s", self.cache.path)

    def close(self) -> None:
        if self._device is not None:
            self._device.free()
            self._device = None


def entropy_calibrator(trt: Any, feed: CalibratorFeed) -> Any:
    """trt.IInt8EntropyCalibrator2 delegating to `feed`. Raises if this TensorRT has none."""
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise CalibrationError(f"TensorRT {getattr(trt, '__version__', '?')} has no IInt8EntropyCalibrator2 "
                               f"(removed in TensorRT 11: use an explicitly quantized Q/DQ model)")

    class _EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)

        def get_batch_size(self) -> int:
            return feed.get_batch_size()

        def get_batch(self, names: list[str]) -> list[int] | None:
            return feed.get_batch(names)

        def read_calibration_cache(self) -> bytes | None:
            return feed.read_calibration_cache()

        def write_calibration_cache(self, cache: Any) -> None:
            try:
                feed.write_calibration_cache(cache)
            except OSError as exc:
                feed.error = exc

    return _EntropyCalibrator()
