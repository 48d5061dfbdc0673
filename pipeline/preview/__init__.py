"""Live preview page and event snapshots (issue 19; docs/preview.md).

    camera threads --Frame--> PreviewTap.on_frame   (only watched cameras, at most preview.fps each:
                                                     a host copy of the pixels, nothing else)
    publish thread --(FrameDetections, seq)--> PreviewTap.on_published  (pairs them by frame index)
        --> encode thread: draw boxes/labels/tracks/zones, JPEG (OpenCV) --> FrameStore --> HTTP server
                                                                         --> SnapshotWriter thread

Nothing here runs in the detection path: the taps copy and hand over, the drawing, encoding and
disk writes happen on the preview's own threads behind bounded drop-oldest queues.
"""
from pipeline.preview.service import PreviewService

__all__ = ["PreviewService"]
