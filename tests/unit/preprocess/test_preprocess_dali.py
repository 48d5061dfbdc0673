"""DaliLetterbox on the cpu against the OpenCV reference: geometry exact, padding exact, pixels within
one grey level; variable batch sizes and mixed resolutions through one pipeline; fp16; bad frames.

The GPU variant needs a GPU: here only its failure without one is checked (clear one-line error).
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.letterbox_checks import assert_matches_reference, same_frames_without_pixels
from pipeline.frame import Frame, FrameBatch, LetterboxTransform, TensorBatch
from pipeline.preprocess import PreprocessError, create_preprocessor
from pipeline.preprocess.dali import DaliLetterbox, window_position

MAX_BATCH = 8
CAMERA_SIZES = [(1280, 720), (768, 576), (640, 480), (480, 640)]


@pytest.fixture(scope="module")
def dali416() -> DaliLetterbox:
    with DaliLetterbox("cpu", 416, np.float32, MAX_BATCH, num_threads=2) as pre:
        yield pre


def batch_of(frames: list[Frame], formed_at: float = 12.5) -> FrameBatch:
    return FrameBatch(frames=tuple(frames), formed_at=formed_at, oldest_wait_s=0.0)


def check_tensor_batch(out: TensorBatch, frames: list[Frame], input_size: int, dtype: type) -> None:
    assert same_frames_without_pixels(out.frames, frames)
    assert out.transforms == tuple(LetterboxTransform.fit(f.width, f.height, input_size) for f in frames)
    assert isinstance(out.tensor, np.ndarray)
    assert out.tensor.shape == (len(frames), 3, input_size, input_size)
    assert out.tensor.dtype == dtype
    assert out.tensor.flags["C_CONTIGUOUS"]
    for i, (frame, t) in enumerate(zip(frames, out.transforms)):
        assert_matches_reference(out.tensor[i], frame.image, t)


@pytest.mark.parametrize("size", CAMERA_SIZES + [
    (333, 211),    # upscaled
    (1001, 999),   # odd padding (S - resized is odd): window position must round like pad_y
    (416, 416),    # no padding, scale 1
    (3000, 100),   # extreme aspect ratio: 416x14
], ids=lambda s: f"{s[0]}x{s[1]}")
def test_each_camera_size_matches_reference(dali416, make_frame, size):
    frames = [make_frame(*size)]
    out = dali416(batch_of(frames))
    check_tensor_batch(out, frames, 416, np.float32)
    assert out.formed_at == 12.5


def test_mixed_resolutions_in_one_full_batch(dali416, make_frame):
    sizes = CAMERA_SIZES * 2
    frames = [make_frame(w, h, camera_id=f"cam{i}") for i, (w, h) in enumerate(sizes)]
    assert len(frames) == MAX_BATCH
    check_tensor_batch(dali416(batch_of(frames)), frames, 416, np.float32)


def test_batch_sizes_change_from_call_to_call(dali416, make_frame):
    """One pipeline serves batches of 1..max_batch; outputs handed out earlier stay intact
    (they share DALI's buffers, which must not be recycled under them)."""
    kept = []
    for n in (1, MAX_BATCH, 3, 1, MAX_BATCH - 1):
        frames = [make_frame(*CAMERA_SIZES[(n + i) % 4], camera_id=f"c{i}") for i in range(n)]
        out = dali416(batch_of(frames))
        check_tensor_batch(out, frames, 416, np.float32)
        kept.append((out.tensor, out.tensor.copy()))
    for tensor, snapshot in kept:
        assert np.array_equal(tensor, snapshot)


def test_input_size_640_and_odd_padding_in_both_axes(make_frame):
    frames = [make_frame(1280, 720), make_frame(480, 640), make_frame(641, 479), make_frame(479, 641)]
    with create_preprocessor("cpu", 640, np.float32, 4, 2) as pre:
        check_tensor_batch(pre(batch_of(frames)), frames, 640, np.float32)


def test_float16_output(make_frame):
    frames = [make_frame(w, h) for w, h in CAMERA_SIZES]
    with create_preprocessor("cpu", 416, np.float16, MAX_BATCH, 2) as pre:
        check_tensor_batch(pre(batch_of(frames)), frames, 416, np.float16)


def test_real_footage_frame(dali416, street_scene):
    h, w = street_scene.shape[:2]
    frame = Frame("street", 0, 0.0, 0.0, w, h, street_scene)
    check_tensor_batch(dali416(batch_of([frame])), [frame], 416, np.float32)


def test_non_contiguous_image_view(dali416, make_frame):
    base = make_frame(1280, 720).image
    view = base[:, ::-1][100:580, 200:840]  # mirrored crop: strided, not contiguous
    frame = Frame("view", 0, None, 0.0, 640, 480, view)
    check_tensor_batch(dali416(batch_of([frame])), [frame], 416, np.float32)


def test_bad_frames_are_rejected_alone(make_frame):
    rejected: list[tuple[str, str]] = []
    good = [make_frame(1280, 720, "good0"), make_frame(640, 480, "good1")]
    liar = make_frame(640, 480, "liar")
    bad = [
        Frame("gray", 1, None, 0.0, 64, 48, np.zeros((48, 64), np.uint8)),
        Frame("float", 2, None, 0.0, 64, 48, np.zeros((48, 64, 3), np.float32)),
        Frame("none", 3, None, 0.0, 64, 48, None),
        Frame("liar", 4, None, 0.0, 1280, 720, liar.image),
        Frame("device", 5, None, 0.0, 64, 48, DeviceImage(48, 64)),
    ]
    with create_preprocessor("cpu", 416, np.float32, 8, 1,
                             on_reject=lambda f, why: rejected.append((f.camera_id, why))) as pre:
        out = pre(batch_of([bad[0], good[0], *bad[1:], good[1]]))
    check_tensor_batch(out, good, 416, np.float32)
    reasons = dict(rejected)
    assert list(reasons) == ["gray", "float", "none", "liar", "device"]
    assert "not HxWx3" in reasons["gray"]
    assert "float32 is not uint8" in reasons["float"]
    assert "NoneType" in reasons["none"]
    assert "640x480 but the frame says 1280x720" in reasons["liar"]
    assert "runs on the cpu" in reasons["device"]
    assert all("\n" not in why for why in reasons.values())


def test_all_frames_rejected_gives_an_empty_batch(dali416):
    frame = Frame("gray", 0, None, 0.0, 4, 4, np.zeros((4, 4), np.uint8))
    out = dali416(batch_of([frame]))
    assert out.frames == () and out.transforms == ()
    assert out.tensor.shape == (0, 3, 416, 416) and out.tensor.dtype == np.float32
    assert dali416(batch_of([])).tensor.shape == (0, 3, 416, 416)


def test_batch_over_max_batch_is_refused(dali416, make_frame):
    frames = [make_frame(64, 48)] * (MAX_BATCH + 1)
    with pytest.raises(ValueError, match="exceeds max_batch 8"):
        dali416(batch_of(frames))


def test_closed_preprocessor_is_refused(make_frame):
    pre = create_preprocessor("cpu", 64, np.float32, 2, 1)
    pre.close()
    with pytest.raises(RuntimeError, match="after close"):
        pre(batch_of([make_frame(64, 48)]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(device="tpu"), "device 'tpu'"),
    (dict(dtype=np.int8), "dtype int8 is not supported"),
    (dict(input_size=0), "input_size 0"),
    (dict(max_batch=0), "max_batch 0"),
    (dict(num_threads=0), "num_threads 0"),
])
def test_invalid_arguments_are_named(kwargs, message):
    args = dict(device="cpu", input_size=64, dtype=np.float32, max_batch=2, num_threads=1) | kwargs
    with pytest.raises(ValueError, match=message):
        create_preprocessor(**args)


def test_window_position_rounds_to_the_padding():
    """crop_mirror_normalize places the window at roundf(pos * (resized - S)); that must be -pad for
    every resized extent of the common input sizes (float32 arithmetic, as DALI does it)."""
    for size in (320, 416, 512, 640, 1280):
        for resized in range(1, size + 1):
            pad = (size - resized) // 2
            pos = window_position(pad, resized, size)
            assert 0.0 <= pos <= 1.0
            assert int(np.round(pos * np.float32(resized - size))) == -pad


def test_gpu_variant_without_a_gpu_fails_in_one_line():
    from nvidia.dali import backend

    if backend.GetCUDADeviceCount() > 0:
        pytest.skip("a GPU is present: the GPU variant is exercised elsewhere")
    with pytest.raises(PreprocessError, match="cannot build the DALI gpu pipeline") as info:
        create_preprocessor("gpu", 64, np.float16, 2, 1)
    assert "\n" not in str(info.value)


class DeviceImage:
    """What a GPU decoder hands over: only __cuda_array_interface__ (here never dereferenced)."""

    def __init__(self, height: int, width: int) -> None:
        self.__cuda_array_interface__ = {"shape": (height, width, 3), "typestr": "|u1",
                                         "data": (0, False), "version": 3, "strides": None}


def test_preprocessor_from_config_follows_model_and_scheduler(make_frame):
    from pipeline.config import parse_config
    from pipeline.preprocess import preprocessor_from_config

    cfg = parse_config(
        "cameras: [{id: a, url: 'synthetic:'}]\n"
        "model: {path: m.onnx, labels: [person], precision: fp16, input_size: 320}\n"
        "scheduler: {max_batch: 3}\n"
        "preprocess: {device: cpu, num_threads: 1}\n", check_files=False)
    with preprocessor_from_config(cfg) as pre:
        assert (pre.device, pre.input_size, pre.dtype, pre.max_batch) == ("cpu", 320, np.float16, 3)
        frames = [make_frame(1280, 720)]
        check_tensor_batch(pre(batch_of(frames)), frames, 320, np.float16)
    with preprocessor_from_config(cfg, dtype=np.float32) as pre:
        assert pre.dtype == np.float32


def test_dali_failure_is_one_line_and_the_next_batch_works(make_frame):
    """Only an inconsistent transform gets DALI to fail after the frame checks; it stands in for
    any runtime failure: a one-line PreprocessError, then a fresh pipeline for the next batch."""
    frame = make_frame(64, 48)
    impossible = LetterboxTransform(64, 48, 64, 1.0, 64, 48, pad_x=0, pad_y=100)  # window off the canvas
    with create_preprocessor("cpu", 64, np.float32, 2, 1) as pre:
        with pytest.raises(PreprocessError, match=r"DALI cpu letterbox failed on a batch of 1 \(64x48\)") as info:
            pre._letterbox([frame.image], [impossible])
        assert "\n" not in str(info.value)
        check_tensor_batch(pre(batch_of([frame])), [frame], 64, np.float32)
