"""The decoder step of file and network sources: PyAV on the CPU, or NVDEC (`decode: {device: gpu}`).

PyAV always opens, demuxes and reconnects (file.py, network.py); only the packets' decoding differs:

    cpu:  packet.decode() -> rgb24 numpy                                  (decoding.decode_pictures)
    gpu:  h264/hevc_mp4toannexb (PyAV bitstream filter) -> PyNvVideoCodec decoder on the camera's
          CUDA stream -> device-to-device copy into a pooled picture (__cuda_array_interface__):
          `decode.nvdec_output: nv12` keeps the decoded NV12 surface (DeviceNV12Image, with the
          stream's colour matrix and range; the fused preprocess kernel converts it), `rgb` has
          PyNvVideoCodec convert it to interleaved RGB first (DeviceImage). Pixels never touch host memory.

Why the copy: frames returned by the decoder's Decode() live in its internal buffers, which later
Decode() calls may overwrite (its own docstring; GetLockedFrame/UnlockFrame is the alternative),
while our frames wait in the scheduler for a batch. One 1080p copy is ~6 MB at several TB/s.

Decoder reuse: a camera keeps its last decoder after a clean end of stream (the file loops, the
network source reconnects) and reuses it for the next stream of the same codec, because creating
and destroying one holds the GIL for 0.1-1 s and so stalls every camera of the process.

Teardown: destroying a decoder also holds the GIL for 0.1-1 s, so a decode worker with 34 cameras
took seconds to stop them all and was killed at shutdown (issue 22). A camera's last decoder, its
pool and stream are torn down by `retire` when one is given (the worker's DeferredTeardown: later, on
a thread of its own, or never when the worker exits first), else at once on the camera's thread.

Fallback: if NVDEC cannot serve a camera (PyNvVideoCodec or cuda-python missing, no GPU, a codec or
pixel format NVDEC does not take, the decoder failing before its first picture), that camera
decodes on the CPU from then on: one warning in the log and as a status event, other cameras
unaffected. Packets already sent to NVDEC are replayed into the CPU decoder, so nothing is lost.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Protocol

import av
import av.error
import numpy as np

from pipeline.config import DecodeConfig
from pipeline.sources.base import Retire
from pipeline.sources.decoding import (DecodedPicture, VideoInput, decode_frames, decode_pictures, demux_packets,
                                       ffmpeg_message)

log = logging.getLogger(__name__)

# PyAV codec name -> (PyNvVideoCodec cudaVideoCodec member, annex-B bitstream filter, metadata filter)
NVDEC_CODECS = {"h264": ("H264", "h264_mp4toannexb", "h264_metadata"),
                "hevc": ("HEVC", "hevc_mp4toannexb", "hevc_metadata")}
# Untagged streams (no VUI colour matrix): FFmpeg's rgb24 (the CPU path) converts them with BT.601,
# NVDEC with BT.709 from 720p up (measured: docs/gpu-validation.md), so the same stream gave other
# colours, and other detections, on the GPU. Tagging such streams BT.601 (matrix 6, SMPTE 170M) in
# the bitstream makes NVDEC convert exactly as the CPU path does. Tagged streams are left alone.
UNSPECIFIED_COLORSPACE = 2
BT601_MATRIX = 6
# 8-bit 4:2:0 only: what NVDEC's RGB output path takes on every GPU generation.
NVDEC_PIXEL_FORMATS = frozenset({"yuv420p", "yuvj420p", "nv12"})
# Packets kept for a CPU replay until NVDEC produced its first picture (a GOP or two).
MAX_REPLAY_PACKETS = 600
# Smallest size a decoder is created for, so a camera can switch resolution up to 1080p in place.
MIN_MAX_WIDTH, MIN_MAX_HEIGHT = 1920, 1088

Warn = Callable[[str], None]
OnCorrupt = Callable[[str], None]


class PictureDecoder(Protocol):
    """Turns an open VideoInput into pictures; one per camera, reused across reconnects."""

    def pictures(self, video: VideoInput, on_corrupt: OnCorrupt) -> Iterator[DecodedPicture]: ...

    def close(self) -> None: ...


class CpuPictureDecoder:
    """PyAV software decoding to rgb24 numpy arrays."""

    def pictures(self, video: VideoInput, on_corrupt: OnCorrupt) -> Iterator[DecodedPicture]:
        return decode_pictures(video, on_corrupt)

    def close(self) -> None:
        pass


def picture_decoder(decode: DecodeConfig, camera_id: str, warn: Warn, retire: Retire | None = None) -> PictureDecoder:
    """The decoder for `decode.device`; `warn(reason)` reports a fallback to the CPU; `retire` takes
    the GPU teardown at close (see the module docstring)."""
    if decode.device != "gpu":
        return CpuPictureDecoder()
    return NvdecPictureDecoder(decode.gpu_id, camera_id, warn, nv12=decode.nvdec_output == "nv12", retire=retire)


class NvdecUnavailable(Exception):
    """NVDEC cannot decode this camera; str() is a one-line reason."""


class NvdecPictureDecoder:
    """NVDEC through PyNvVideoCodec, with a per-camera CPU fallback (see the module docstring)."""

    def __init__(self, gpu_id: int, camera_id: str, warn: Warn, nv12: bool = False,
                 retire: Retire | None = None) -> None:
        self.gpu_id = gpu_id
        self._retire = retire
        self.nv12 = nv12  # hand on NV12 surfaces instead of NVDEC's RGB conversion
        self.camera_id = camera_id
        self._warn = warn
        self._runtime: _NvdecRuntime | None = None
        self.fallback_reason: str | None = None  # set once the camera decodes on the CPU

    @property
    def on_gpu(self) -> bool:
        return self.fallback_reason is None

    def pictures(self, video: VideoInput, on_corrupt: OnCorrupt) -> Iterator[DecodedPicture]:
        if self.fallback_reason is None:
            try:
                session = self._open(video)
            except NvdecUnavailable as exc:
                self._fall_back(str(exc))
            else:
                return self._decode(session, video, on_corrupt)
        return decode_pictures(video, on_corrupt)

    def close(self) -> None:
        if self._runtime is not None:
            runtime, self._runtime = self._runtime, None
            if self._retire is not None:
                self._retire(runtime.close)
            else:
                runtime.close()

    # ------------------------------------------------------------------ internals

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = reason
        self._warn(f"NVDEC unavailable on cuda:{self.gpu_id} ({reason}); decoding on the CPU")

    def _open(self, video: VideoInput) -> "_NvdecSession":
        ctx = video.stream.codec_context
        codec = ctx.name
        if codec not in NVDEC_CODECS:
            raise NvdecUnavailable(f"codec {codec} is not H.264 or HEVC")
        pix_fmt = ctx.format.name if ctx.format is not None else None
        if pix_fmt is not None and pix_fmt not in NVDEC_PIXEL_FORMATS:
            raise NvdecUnavailable(f"{codec} pixel format {pix_fmt} is not 8-bit 4:2:0")
        if self._runtime is None:
            self._runtime = _NvdecRuntime(self.gpu_id)
        return _NvdecSession(self._runtime, video, self.nv12)

    def _decode(self, session: "_NvdecSession", video: VideoInput,
                on_corrupt: OnCorrupt) -> Iterator[DecodedPicture]:
        # Annex-B packets NVDEC has seen, kept until its first picture: replayed on the CPU if it fails.
        try:
            yield from self._decode_session(session, video, on_corrupt)
        finally:
            session.close()

    def _decode_session(self, session: "_NvdecSession", video: VideoInput,
                        on_corrupt: OnCorrupt) -> Iterator[DecodedPicture]:
        replay: list[av.Packet] | None = []
        cpu: _AnnexBCpuDecoder | None = None
        for packet in demux_packets(video, on_corrupt):
            for annexb in session.annex_b(packet):
                if cpu is not None:
                    yield from cpu.decode(annexb, on_corrupt)
                    continue
                if replay is not None:
                    replay.append(annexb)
                try:
                    pictures = session.decode(annexb)
                except NvdecUnavailable as exc:
                    if replay is None:  # NVDEC worked before: this packet is bad, not the decoder
                        on_corrupt(f"nvdec: {exc}")
                        continue
                    session.close()
                    self._fall_back(str(exc))
                    cpu = _AnnexBCpuDecoder(video)
                    for old in replay:
                        yield from cpu.decode(old, on_corrupt)
                    replay = None
                    continue
                if pictures:
                    replay = None
                elif replay is not None and len(replay) > MAX_REPLAY_PACKETS:
                    replay = None  # NVDEC accepts data but shows nothing yet: treat later errors as data errors
                yield from pictures
        if cpu is not None:
            yield from cpu.flush(on_corrupt)
            return
        try:
            yield from session.flush()
        except NvdecUnavailable as exc:
            on_corrupt(f"nvdec flush: {exc}")


class _AnnexBCpuDecoder:
    """A fresh PyAV decoder for annex-B packets (the stream's own decoder expects avcC/hvcC)."""

    def __init__(self, video: VideoInput) -> None:
        self._ctx = av.CodecContext.create(video.stream.codec_context.name, "r")
        self._ctx.thread_type = "AUTO"
        self._time_base = video.stream.time_base

    def decode(self, packet: av.Packet, on_corrupt: OnCorrupt) -> Iterator[DecodedPicture]:
        yield from decode_frames(lambda: self._ctx.decode(packet), on_corrupt, self._time_base)

    def flush(self, on_corrupt: OnCorrupt) -> Iterator[DecodedPicture]:
        yield from decode_frames(lambda: self._ctx.decode(None), on_corrupt, self._time_base)


class _NvdecRuntime:
    """What one camera's NVDEC decoding needs across reconnects: the module, a CUDA stream and the
    pool its pictures live in."""

    def __init__(self, gpu_id: int) -> None:
        try:
            import PyNvVideoCodec as nvc  # noqa: N813 - the library's own spelling
        except Exception as exc:  # ImportError, or its RuntimeError when no driver is found
            raise NvdecUnavailable(f"PyNvVideoCodec cannot be loaded: {_first_line(exc)}") from None
        try:
            from cuda.bindings import driver

            from pipeline.gpu.memory import DeviceBufferPool
            from pipeline.gpu.runtime import check, load_cuda_runtime
            from pipeline.gpu.stream import CudaStream
            rt = load_cuda_runtime()
            check(rt.cudaSetDevice(gpu_id), f"cudaSetDevice({gpu_id})")
            # The decoder gets the device's primary context, the one DALI and ONNX Runtime use:
            # with cudacontext=0 PyNvVideoCodec may create a context of its own per decoder, and
            # kernels of different contexts never run concurrently (the GPU time-slices them).
            self._device = check(driver.cuDeviceGet(gpu_id), f"cuDeviceGet({gpu_id})")
            self.context = int(check(driver.cuDevicePrimaryCtxRetain(self._device), "cuDevicePrimaryCtxRetain"))
            self._driver = driver
            self._stream = CudaStream(rt)
            self.stream = self._stream.handle
            self.pool = DeviceBufferPool(gpu_id)
        except Exception as exc:  # no device, no cuda-python, driver too old
            raise NvdecUnavailable(f"no usable CUDA device: {_first_line(exc)}") from None
        self.nvc = nvc
        self.rt = rt
        self.check = check
        self.gpu_id = gpu_id
        # The last session's decoder, kept for the next session of the same codec and size limit
        # (a looping file, a reconnect): creating and destroying an NVDEC decoder takes 0.1-1 s with
        # the GIL held, which stalled every camera in the process when 16 looping files
        # restarted together (measured on the H200, docs/BENCHMARKS.md).
        self._parked: tuple[tuple[Any, ...], Any] | None = None
        # The last decoder not fit for reuse (a stream cut off), destroyed when the next session
        # starts or at close(): a camera's last one then goes with the rest of its teardown.
        self._discarded: Any = None

    def take_decoder(self, key: tuple[Any, ...]) -> Any | None:
        """The parked decoder if it was made for `key` (codec, max width, max height); else None
        (and a parked decoder of another kind is dropped)."""
        self._discarded = None
        parked, self._parked = self._parked, None
        if parked is not None and parked[0] == key:
            return parked[1]
        return None

    def park_decoder(self, key: tuple[Any, ...], decoder: Any) -> None:
        """Keep a decoder that ended its stream cleanly (flushed) for the next session."""
        self._parked = (key, decoder)

    def discard_decoder(self, decoder: Any) -> None:
        """Drop a decoder that is not reused (destroyed with the next session's start or at close)."""
        self._discarded = decoder

    def close(self) -> None:
        """Free the decoders, the pool and the stream. May run on another thread than the camera's
        (DeferredTeardown): the runtime API acts on the thread's current device, so set it first."""
        try:
            self.rt.cudaSetDevice(self.gpu_id)
        except Exception:  # noqa: BLE001 - closing goes on (a lost GPU, say)
            log.debug("NVDEC teardown on cuda:%d: cudaSetDevice failed", self.gpu_id, exc_info=True)
        self._parked = self._discarded = None  # the decoders go before the stream they run on
        self.pool.close()
        try:
            self._stream.close()
        except Exception:  # noqa: BLE001 - unchecked, as before: closing goes on (a lost GPU, say)
            log.debug("NVDEC stream on cuda:%d: destroy failed", self.gpu_id, exc_info=True)
        self._driver.cuDevicePrimaryCtxRelease(self._device)


class _NvdecSession:
    """One opened input: a bitstream filter and an NVDEC decoder for its codec."""

    def __init__(self, runtime: _NvdecRuntime, video: VideoInput, nv12: bool = False) -> None:
        from av.bitstream import BitStreamFilterContext
        from pipeline.gpu.memory import DeviceImage
        from pipeline.gpu.nv12 import DeviceNV12Image

        self._DeviceImage = DeviceImage
        self._DeviceNV12Image = DeviceNV12Image
        self._nv12 = nv12
        self._matrix, self._full_range = stream_colour(video.stream.codec_context)
        self.rt = runtime
        codec = video.stream.codec_context.name
        member, annexb_filter, metadata_filter = NVDEC_CODECS[codec]
        nvc = runtime.nvc
        bsf_name = annexb_filter
        if _colorspace(video.stream.codec_context) == UNSPECIFIED_COLORSPACE:
            bsf_name += f",{metadata_filter}=matrix_coefficients={BT601_MATRIX}"
        try:
            self._bsf = BitStreamFilterContext(bsf_name, video.stream)
        except (av.error.FFmpegError, ValueError) as exc:
            raise NvdecUnavailable(f"bitstream filter {bsf_name}: {ffmpeg_message(exc)}") from None
        # NVDEC reconfigures in place for a new resolution only up to the size it was created for;
        # a camera switching to a larger size would otherwise decode nothing.
        ctx = video.stream.codec_context
        max_w, max_h = max(ctx.width or 0, MIN_MAX_WIDTH), max(ctx.height or 0, MIN_MAX_HEIGHT)
        self._key = (codec, max_w, max_h, nv12)
        self._flushed = False  # only a decoder that reached the end of its stream cleanly is reused
        self._decoder = runtime.take_decoder(self._key)
        if self._decoder is None:
            try:
                self._decoder = nvc.CreateDecoder(
                    gpuid=runtime.gpu_id, codec=getattr(nvc.cudaVideoCodec, member),
                    cudacontext=runtime.context, cudastream=runtime.stream, usedevicememory=True,
                    outputColorType=nvc.OutputColorType.NATIVE if nv12 else nvc.OutputColorType.RGB,
                    maxwidth=max_w, maxheight=max_h, **low_latency(nvc))
            except Exception as exc:  # pybind raises RuntimeError / PyNvVCException with multi-line text
                raise NvdecUnavailable(f"cannot create the {codec} decoder: {_first_line(exc)}") from None
        self._time_base = video.stream.time_base
        self._nvc = nvc

    def annex_b(self, packet: av.Packet) -> list[av.Packet]:
        """The packet in annex-B form (a pass-through for streams that already are, e.g. RTSP, TS)."""
        if packet.size == 0:  # PyAV's end-of-stream packet: the filter is flushed in flush()
            return []
        try:
            return list(self._bsf.filter(packet))
        except av.error.FFmpegError as exc:
            log.debug("bitstream filter rejected a packet: %s", ffmpeg_message(exc))
            return []

    def decode(self, packet: av.Packet) -> list[DecodedPicture]:
        data = np.frombuffer(packet, np.uint8)  # a view: no copy of the bitstream
        return self._submit(int(data.ctypes.data), data.size, packet.pts, keep=packet)

    def flush(self) -> Iterator[DecodedPicture]:
        for packet in self._flush_bsf():
            yield from self.decode(packet)
        yield from self._submit(0, 0, None, keep=None)  # an empty packet: NVDEC's end of stream
        self._flushed = True  # the parser is back at a clean start: the next stream may reuse it

    def _flush_bsf(self) -> list[av.Packet]:
        try:
            return list(self._bsf.filter(None))
        except av.error.FFmpegError:
            return []

    def _submit(self, ptr: int, size: int, pts: int | None, keep: Any) -> list[DecodedPicture]:
        nvc = self._nvc
        try:
            packet = nvc.PacketData()
            packet.bsl_data = ptr
            packet.bsl = size
            if pts is not None:
                packet.pts = pts
            frames = self._decoder.Decode(packet)
        except Exception as exc:  # noqa: BLE001 - the decoder's errors are RuntimeError/PyNvVCException
            raise NvdecUnavailable(f"decode failed: {_first_line(exc)}") from None
        del keep  # the bitstream had to stay alive until Decode returned
        try:
            return [self._picture(f) for f in frames]
        except NvdecUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - CUDA errors while copying the surface out
            raise NvdecUnavailable(f"reading the decoded surface failed: {_first_line(exc)}") from None

    def close(self) -> None:
        """Hand a cleanly flushed decoder back to the runtime for the next session; drop any other
        (a stream cut off mid-way or a decoder that failed is not trusted again)."""
        if self._decoder is not None and self._flushed:
            self.rt.park_decoder(self._key, self._decoder)
        elif self._decoder is not None:
            self.rt.discard_decoder(self._decoder)
        self._decoder = None

    def _picture(self, frame: Any) -> DecodedPicture:
        if self._nv12:
            return self._nv12_picture(frame)
        rt, cuda = self.rt, self.rt.rt
        cai = _frame_cai(frame)
        height, width, pitch = _rgb_geometry(cai)
        image = self._DeviceImage(rt.pool, height, width)
        sync = getattr(frame, "SyncOnCUStream", None)
        if sync is not None:
            sync()  # the RGB conversion finished, whatever stream the decoder used
        row = width * 3
        rt.check(cuda.cudaMemcpy2DAsync(image.ptr, row, int(cai["data"][0]), pitch, row, height,
                                        cuda.cudaMemcpyKind.cudaMemcpyDeviceToDevice, rt.stream),
                 "cudaMemcpy2DAsync")
        rt.check(cuda.cudaStreamSynchronize(rt.stream), "cudaStreamSynchronize")
        timestamp = getattr(frame, "timestamp", None)
        pts = None if timestamp is None or self._time_base is None else float(int(timestamp) * self._time_base)
        return DecodedPicture(image, pts)

    def _nv12_picture(self, frame: Any) -> DecodedPicture:
        """Copy the decoder's NV12 surface (luma plane, then the U,V plane) into a pooled
        DeviceNV12Image: two 2D copies, 1.5 bytes a pixel instead of RGB's 3."""
        rt, cuda = self.rt, self.rt.rt
        (luma, luma_pitch), (chroma, chroma_pitch), (height, width) = _nv12_planes(frame)
        image = self._DeviceNV12Image(rt.pool, width, height, self._matrix, self._full_range)
        sync = getattr(frame, "SyncOnCUStream", None)
        if sync is not None:
            sync()
        kind = cuda.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        row = 2 * ((width + 1) // 2)
        rt.check(cuda.cudaMemcpy2DAsync(image.ptr, image.pitch, luma, luma_pitch, width, height, kind, rt.stream),
                 "cudaMemcpy2DAsync luma")
        rt.check(cuda.cudaMemcpy2DAsync(image.chroma_ptr, image.pitch, chroma, chroma_pitch, row, (height + 1) // 2,
                                        kind, rt.stream), "cudaMemcpy2DAsync chroma")
        rt.check(cuda.cudaStreamSynchronize(rt.stream), "cudaStreamSynchronize")
        timestamp = getattr(frame, "timestamp", None)
        pts = None if timestamp is None or self._time_base is None else float(int(timestamp) * self._time_base)
        return DecodedPicture(image, pts)


def low_latency(nvc: Any) -> dict[str, Any]:
    """CreateDecoder's argument for pictures out of the Decode() call that took their packet.

    Measured on the H200 (tests/gpu/test_nvdec_gpu.py, PyNvVideoCodec 2.2.4, streams without
    B-frames): with the default (NATIVE) a picture leaves Decode() two packets after its own, with
    LOW one. For a live camera each packet is a frame interval (33 ms at 30 fps, 100 ms at 10 fps)
    added before `captured_at` is stamped, so unseen by our latency figures. LOW still returns
    pictures in display order (a stream with B-frames waits as long as its reordering needs).
    Versions without the setting keep their default."""
    kind = getattr(nvc, "DisplayDecodeLatencyType", None)
    low = getattr(kind, "LOW", None)
    return {} if low is None else {"latency": low}


def stream_colour(ctx: Any) -> tuple[str, bool]:
    """(matrix, full_range) the NV12 pictures of this stream are converted with: BT.709 when the
    stream is tagged so, else BT.601 (untagged streams too, as the CPU path and the RGB path after
    the tag above do); full range for JPEG-range streams (color_range 2, or yuvj420p)."""
    matrix = "bt709" if _colorspace(ctx) == 1 else "bt601"
    try:
        full = int(ctx.color_range) == 2
    except (AttributeError, TypeError, ValueError):
        full = False
    pix_fmt = ctx.format.name if getattr(ctx, "format", None) is not None else ""
    return matrix, full or pix_fmt == "yuvj420p"


def _colorspace(ctx: Any) -> int:
    """The stream's colour matrix (AVColorSpace number); unspecified when PyAV cannot say."""
    try:
        return int(ctx.colorspace)
    except (AttributeError, TypeError, ValueError):
        return UNSPECIFIED_COLORSPACE


def _frame_cai(frame: Any) -> dict[str, Any]:
    """The __cuda_array_interface__ of a PyNvVideoCodec DecodedFrame (RGB: one interleaved plane)."""
    cai = getattr(frame, "__cuda_array_interface__", None)
    if cai is None:
        views = frame.cuda()
        cai = views[0].__cuda_array_interface__
    return dict(cai)


def _rgb_geometry(cai: dict[str, Any]) -> tuple[int, int, int]:
    """(height, width, row pitch in bytes) of an interleaved RGB uint8 plane."""
    shape = tuple(int(d) for d in cai["shape"])
    if len(shape) == 3 and shape[2] == 3:
        height, width = shape[0], shape[1]
    elif len(shape) == 2 and shape[1] % 3 == 0:
        height, width = shape[0], shape[1] // 3
    else:
        raise NvdecUnavailable(f"unexpected RGB surface shape {shape}")
    strides = cai.get("strides")
    pitch = int(strides[0]) if strides else width * 3
    return height, width, pitch


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _nv12_planes(frame: Any) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """((luma ptr, pitch), (chroma ptr, pitch), (height, width)) of a PyNvVideoCodec NV12 frame.

    Per-plane views (frame.cuda(): luma [H, W(, 1)], chroma [H/2, W/2, 2]) when the frame has
    them; else its one interface over the whole surface, [H * 3/2, W], chroma after H luma rows."""
    views = frame.cuda() if hasattr(frame, "cuda") else None
    if views is not None and len(views) >= 2:
        luma, chroma = (dict(v.__cuda_array_interface__) for v in views[:2])
        lshape = tuple(int(d) for d in luma["shape"])
        height, width = lshape[0], lshape[1]
        return ((int(luma["data"][0]), _row_pitch(luma, width)),
                (int(chroma["data"][0]), _row_pitch(chroma, 2 * ((width + 1) // 2))), (height, width))
    cai = _frame_cai(frame)
    shape = tuple(int(d) for d in cai["shape"])
    if len(shape) < 2 or shape[0] * 2 % 3 != 0:
        raise NvdecUnavailable(f"unexpected NV12 surface shape {shape}")
    height, width = shape[0] * 2 // 3, shape[1]
    pitch = _row_pitch(cai, width)
    ptr = int(cai["data"][0])
    return (ptr, pitch), (ptr + height * pitch, pitch), (height, width)


def _row_pitch(cai: dict[str, Any], row_bytes: int) -> int:
    strides = cai.get("strides")
    return int(strides[0]) if strides else row_bytes
