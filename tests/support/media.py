"""Real encoded test media made with PyAV: small clips with moving shapes, broken copies, etc."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.sources.synthetic import SyntheticPattern

# codec name -> (PyAV encoder, pixel format, encoder options)
_ENCODERS = {
    "h264": ("libx264", "yuv420p", {"preset": "veryfast", "g": "15"}),  # veryfast keeps B-frames
    "hevc": ("libx265", "yuv420p", {"preset": "ultrafast", "x265-params": "log-level=error"}),
    "mpeg4": ("mpeg4", "yuv420p", {}),
    "mjpeg": ("mjpeg", "yuvj420p", {}),
}


def make_clip(path: str | os.PathLike[str], width: int = 160, height: int = 120, frames: int = 30,
              fps: int = 30, codec: str = "h264", first_index: int = 0,
              options: dict[str, str] | None = None) -> Path:
    """Encode `frames` pictures of the moving-rectangles pattern; the container follows the suffix
    (.mp4, .mkv, .ts, .avi). Frame i of the clip shows pattern frame first_index + i. `options` go to
    the encoder over the defaults (e.g. no B-frames, as IP cameras encode)."""
    if codec not in _ENCODERS:
        raise ValueError(f"codec {codec!r}: expected one of {sorted(_ENCODERS)}")
    if width % 2 or height % 2:
        raise ValueError(f"{width}x{height}: 4:2:0 video needs even width and height")
    encoder, pix_fmt, defaults = _ENCODERS[codec]
    path = Path(path)
    pattern = SyntheticPattern(width, height)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(encoder, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {**defaults, **(options or {})}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern.render(first_index + i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_hls(folder: str | os.PathLike[str], width: int = 128, height: int = 96, frames: int = 30,
             fps: int = 25, segment_s: float = 0.4) -> Path:
    """An HLS VOD stream (H.264 in MPEG-TS segments) in `folder`; returns its index.m3u8."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    playlist = folder / "index.m3u8"
    pattern = SyntheticPattern(width, height)
    options = {"hls_time": str(segment_s), "hls_playlist_type": "vod",
               "hls_segment_filename": str(folder / "seg%03d.ts")}
    with av.open(str(playlist), mode="w", format="hls", options=options) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # a keyframe at every segment start, as HLS requires
        stream.options = {"preset": "veryfast", "g": str(max(1, int(fps * segment_s)))}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern.render(i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return playlist


def make_resolution_change_clip(path: str | os.PathLike[str], sizes: list[tuple[int, int]],
                                frames_each: int = 10, fps: int = 30) -> Path:
    """One MPEG-TS file whose H.264 stream changes resolution at each segment boundary
    (byte-concatenated TS segments, as a camera reconfiguring mid-stream produces)."""
    path = Path(path)
    data = b""
    for k, (width, height) in enumerate(sizes):
        part = path.with_name(f"{path.stem}.part{k}.ts")
        make_clip(part, width, height, frames_each, fps, first_index=k * frames_each)
        data += part.read_bytes()
        part.unlink()
    path.write_bytes(data)
    return path


def corrupt_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str], chunks: int = 20,
                 chunk_bytes: int = 64, start: float = 0.3, end: float = 0.8, seed: int = 1) -> Path:
    """Copy `src` with `chunks` runs of random bytes written between the given fractions of its
    length (the header stays intact so the file still opens)."""
    data = bytearray(Path(src).read_bytes())
    rng = np.random.default_rng(seed)
    first, last = int(len(data) * start), int(len(data) * end)
    for offset in np.linspace(first, last, chunks, dtype=np.int64):
        data[offset:offset + chunk_bytes] = rng.integers(0, 256, chunk_bytes, dtype=np.uint8).tobytes()
    dst = Path(dst)
    dst.write_bytes(bytes(data))
    return dst


def make_audio_only(path: str | os.PathLike[str], seconds: float = 0.5, rate: int = 8000) -> Path:
    """A WAV file: a valid media file without any video stream."""
    path = Path(path)
    samples = int(seconds * rate)
    tone = (np.sin(np.arange(samples) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_vfr_clip(path: str | os.PathLike[str], width: int = 160, height: int = 120,
                  intervals_ms: tuple[int, ...] = (20, 100, 40, 250, 33) * 8) -> tuple[Path, list[float]]:
    """A variable-frame-rate H.264 clip: frame i+1 follows frame i after intervals_ms[i]
    milliseconds. Returns the path and every frame's pts in seconds."""
    path = Path(path)
    pattern = SyntheticPattern(width, height)
    millis = Fraction(1, 1000)
    pts: list[float] = []
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))  # nominal only: the pts rule
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = millis
        stream.options = {"preset": "veryfast", "g": "15"}
        t = 0
        for i, gap in enumerate((0, *intervals_ms)):
            t += gap
            frame = av.VideoFrame.from_ndarray(pattern.render(i), format="rgb24")
            frame.pts, frame.time_base = t, millis
            pts.append(t / 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path, pts


def faststart_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Remux an MP4 with its index (moov) in front, as streaming-friendly files have it: a
    truncated copy of such a file still opens and plays up to the cut."""
    dst = Path(dst)
    with av.open(str(src)) as source, av.open(str(dst), mode="w", options={"movflags": "faststart"}) as out:
        in_stream = source.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in source.demux(in_stream):
            if packet.dts is None:  # the demuxer's final flush packet
                continue
            packet.stream = out_stream
            out.mux(packet)
    return dst


def truncated_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str], keep: float = 0.5) -> Path:
    """The first `keep` fraction of the bytes of `src`, as an interrupted download or copy leaves it."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[:int(len(data) * keep)])
    return dst
