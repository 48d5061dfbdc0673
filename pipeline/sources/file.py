"""Video files: decode with PyAV, optionally paced at the native frame rate and looped."""
from __future__ import annotations

import errno
import threading

import av.error

from pipeline.frame import CameraState
from pipeline.sources.base import Ending, Source, register_source
from pipeline.sources.decoding import OpenFailed, VideoInput, ffmpeg_message, open_video
from pipeline.sources.nvdec import PictureDecoder, picture_decoder
from pipeline.sources.pacing import FramePacer

# The process is out of file descriptors or memory (e.g. a flood of connections elsewhere): not the
# file's fault, so the camera waits and opens it again instead of going down for good.
RESOURCE_SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 5.0


@register_source
class FileSource(Source):
    """`realtime: true` releases frames at their pts (a camera replay); `false` decodes as fast as
    the sink accepts (the sink may block: that is the backpressure). `loop: true` reopens the
    file at its end; frame indices keep counting, pts restart with the file."""

    type_key = "file"

    def _stream(self) -> Ending:
        pacer: FramePacer | None = None
        decoder = picture_decoder(self.decode, self.camera.id, self._warn, self._retire)
        try:
            return self._stream_with(decoder, pacer)
        finally:
            decoder.close()

    def _stream_with(self, decoder: PictureDecoder, pacer: FramePacer | None) -> Ending:
        retry_s = RETRY_FIRST_S
        while not self._stop.is_set():
            # An open can block in the kernel (a FIFO with no writer, a hung network mount), where
            # no FFmpeg timeout reaches: say so within timeout_s instead of "starting" for ever.
            # (Not armed for a loop's reopen of a file that is already up.)
            slow_open = threading.Timer(self.camera.timeout_s, self._warn, (
                f"still opening after {self.camera.timeout_s:g} s (a FIFO with no writer? a hung mount?)",))
            slow_open.daemon = True
            if self.state is not CameraState.UP:
                slow_open.start()
            try:
                # Frame threading: files want throughput, and their latency does not matter.
                video = open_video(self.camera.url, thread_type="AUTO")
            except OpenFailed as exc:
                if exc.errno not in RESOURCE_SHORTAGE:
                    return Ending(CameraState.DOWN, f"cannot open: {exc}")
                self._transition(CameraState.RECONNECTING, f"cannot open: {exc}; retrying in {retry_s:g}s")
                self._stop.wait(retry_s)
                retry_s = min(RETRY_MAX_S, retry_s * 2)
                continue
            finally:
                slow_open.cancel()
            retry_s = RETRY_FIRST_S
            try:
                if self.camera.realtime and pacer is None:
                    pacer = FramePacer(self._stop, video.fps)
                delivered = self._play(video, pacer, decoder)
            except av.error.FFmpegError as exc:
                return Ending(CameraState.DOWN, f"read failed: {ffmpeg_message(exc)}")
            finally:
                video.close()
            if self._stop.is_set():
                break
            if delivered == 0:
                return Ending(CameraState.DOWN, "no decodable frames in file")
            if not self.camera.loop:
                return Ending(CameraState.EOF, "end of file")
        return Ending(CameraState.STOPPED, "stop requested")

    def _play(self, video: VideoInput, pacer: FramePacer | None, decoder: PictureDecoder) -> int:
        """Deliver one pass over the file; the number of frames delivered."""
        delivered = 0
        for picture in decoder.pictures(video, self._count_decode_error):
            if pacer is not None and not pacer.wait(picture.pts):
                break
            if not self._deliver(picture.image, picture.pts):
                break
            delivered += 1
        return delivered
