"""Public sources API for readers outside the camera path (INT8 calibration): a few decoded
pictures from a file, camera URL or stream, without a Source, a thread or a status board."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline.observe.redaction import redact_text
from pipeline.sources.decoding import OpenFailed, decode_pictures, open_video
from pipeline.sources.network import open_options


class SampleError(RuntimeError):
    """The input could not be opened or read; str() is one line, the URL's password removed."""


def sample_pictures(url: str, count: int, open_timeout_s: float = 10.0) -> Iterator[np.ndarray]:
    """Up to `count` HxWx3 uint8 RGB pictures of `url`: spread evenly over a file's length, the
    next `count` of a live stream. Synthetic sources have no pictures worth sampling: SampleError."""
    if url.startswith("synthetic:"):
        raise SampleError("synthetic sources have no real pictures; name a video or camera")
    try:
        video = open_video(url, options=open_options(url), timeout=open_timeout_s)
    except OpenFailed as exc:
        raise SampleError(f"cannot open: {redact_text(str(exc), url)}") from None
    try:
        length = int(video.stream.frames or 0)  # 0 for live streams and some containers
        stride = max(1, length // count) if length else 1
        taken = 0
        for i, picture in enumerate(decode_pictures(video, on_corrupt=lambda reason: None)):
            if i % stride:
                continue
            yield picture.image
            taken += 1
            if taken == count:
                break
    except SampleError:
        raise
    except Exception as exc:  # noqa: BLE001 - a read error names the source, nothing else
        raise SampleError(f"read failed: {redact_text(str(exc), url)}") from None
    finally:
        video.close()
