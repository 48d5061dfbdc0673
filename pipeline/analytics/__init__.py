"""Analytics after postprocess: per-camera tracking (ByteTrack-class), zones, lines and events.

`Analytics(FrameDetections) -> (FrameDetections with track ids, FrameEvents | None)` is the stage
(stage.py); it works on host data only (boxes), so it is the same on the CPU and the GPU path.
"""
