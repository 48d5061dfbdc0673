"""The frame and detections taps: nothing copied unless watched (or a snapshot is due), at most
preview.fps per camera, frames paired with their own detections."""
from __future__ import annotations

import gc
import weakref

import numpy as np

from pipeline.frame import Detection, Frame, FrameDetections
from pipeline.preview.tap import WATCH_S, PreviewTap, SnapshotRequest


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(index: int, cam: str = "a", image=None) -> Frame:
    img = np.full((4, 6, 3), index % 256, np.uint8) if image is None else image
    return Frame(cam, index, None, 0.0, 6, 4, img)


def dets(index: int, cam: str = "a") -> FrameDetections:
    return FrameDetections(cam, index, None, 0.0, 6, 4, (Detection("person", 0, 0.9, (1, 1, 3, 3)),))


def test_unwatched_cameras_cost_a_lookup_and_nothing_is_paired() -> None:
    pairs = []
    tap = PreviewTap(2.0, pairs.append, clock=Clock())
    for i in range(10):
        tap.on_frame(frame(i))
        tap.on_published(dets(i), i)
    assert pairs == [] and not tap._pending


def test_watched_camera_is_sampled_at_most_fps_and_paired_with_its_own_detections() -> None:
    clock, pairs = Clock(), []
    tap = PreviewTap(2.0, pairs.append, clock=clock)
    tap.watch(["a"])
    for i in range(20):  # 8 frames/s for 2.5 s
        tap.on_frame(frame(i))
        tap.on_published(dets(i), seq=100 + i)
        clock.now += 0.125
    assert [p.detections.index for p in pairs] == [0, 4, 8, 12, 16]
    assert all(p.seq == 100 + p.detections.index and p.image[0, 0, 0] == p.detections.index for p in pairs)
    clock.now += WATCH_S + 1  # nobody polled since: no more copies
    tap.on_frame(frame(50))
    assert "a" not in tap._pending


def test_a_grabbed_frame_dropped_before_inference_is_replaced() -> None:
    clock, pairs = Clock(), []
    tap = PreviewTap(1.0, pairs.append, clock=clock)
    tap.watch(["a"])
    tap.on_frame(frame(1))
    tap.on_published(dets(2), 0)  # frame 1 never published: dropped in the scheduler
    tap.on_frame(frame(3))  # grabbed at once, not an interval later
    tap.on_published(dets(3), 1)
    assert [p.detections.index for p in pairs] == [3]


class FakeDeviceImage:
    """Stands in for a GPU image (DeviceImage / SharedDeviceImage): only to_host() reaches its pixels."""

    def __init__(self, pixels: np.ndarray) -> None:
        self._pixels = pixels

    def to_host(self) -> np.ndarray:
        return self._pixels.copy()


def test_gpu_images_are_copied_to_the_host_and_not_held() -> None:
    pairs = []
    tap = PreviewTap(2.0, pairs.append, clock=Clock())
    tap.watch(["a"])
    device = FakeDeviceImage(np.full((4, 6, 3), 7, np.uint8))
    ref = weakref.ref(device)
    f = frame(1, image=device)
    tap.on_frame(f)
    del f, device
    gc.collect()
    assert ref() is None, "the tap must not keep the decode worker's buffer"
    tap.on_published(dets(1), 0)
    assert pairs[0].image[0, 0, 0] == 7


def test_snapshot_requests_take_the_next_frame_even_when_nobody_watches() -> None:
    pairs = []
    tap = PreviewTap(2.0, pairs.append, clock=Clock())
    request = SnapshotRequest("a", "zone_enter", "/x/a.jpg")
    tap.request_snapshot(request)
    tap.on_frame(frame(4))
    tap.on_published(dets(4), 0)
    assert len(pairs) == 1 and pairs[0].snapshots == (request,) and not pairs[0].watched


def test_a_cameras_own_page_asks_for_full_size_frames() -> None:
    clock, pairs = Clock(), []
    tap = PreviewTap(2.0, pairs.append, clock=clock)
    tap.watch(["a"])
    tap.on_frame(frame(1))
    tap.on_published(dets(1), 0)
    clock.now += 1
    tap.watch([], full_size=["a"])
    tap.on_frame(frame(2))
    tap.on_published(dets(2), 1)
    assert [p.full_size for p in pairs] == [False, True]
