"""The N benchmark streams: the config's cameras replicated (cycled) to N, or one media file N times."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import CameraConfig, PipelineConfig
from pipeline.observe.redaction import redact_url
from pipeline.sources.decoding import OpenFailed, open_video
from pipeline.sources.synthetic import parse_synthetic_url


def bench_cameras(cfg: PipelineConfig, streams: int, realtime: bool, media: Path | None = None) -> list[CameraConfig]:
    """Stream i is camera i % len(cameras) (or `media`), with id `<camera>-<i>`.

    Files loop (a benchmark must not run out of frames); `realtime` paces files and synthetic
    sources at their native rate (false: as fast as the pipeline takes them). Network cameras are
    live whatever `realtime` says.
    """
    if streams < 1:
        raise ValueError(f"--streams {streams}: need at least 1 stream")
    if media is not None:
        if not media.is_file():
            raise ValueError(f"--media {media}: no such file")
        templates = [CameraConfig(id="media", url=str(media), type="file")]
    else:
        templates = list(cfg.cameras)
    out = []
    for i in range(streams):
        cam = templates[i % len(templates)]
        # model_copy skips validation: loop is only set where the validator would allow it (files)
        out.append(cam.model_copy(update={"id": f"{cam.id}-{i}", "realtime": realtime,
                                          "loop": cam.type == "file"}))
    return out


def native_fps(camera: CameraConfig) -> float | None:
    """Frames per second the camera produces in real time (None for network streams: unknown)."""
    if camera.type == "synthetic":
        return parse_synthetic_url(camera.url).fps
    if camera.type == "file":
        try:
            video = open_video(camera.url)
        except OpenFailed as exc:
            raise ValueError(f"camera {camera.id}: cannot open {redact_url(camera.url)}: {exc}") from None
        try:
            return video.fps
        finally:
            video.close()
    return None


def media_names(cameras: list[CameraConfig]) -> list[str]:
    """The distinct inputs behind the streams, for the report."""
    seen: dict[str, None] = {}
    for cam in cameras:
        seen.setdefault(Path(cam.url).name if cam.type == "file" else redact_url(cam.url), None)
    return list(seen)
