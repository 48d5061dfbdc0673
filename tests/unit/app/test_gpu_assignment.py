"""One GPU id through a camera's path, and cameras spread over G GPUs (app/gpu_assignment.py).
Pure logic: no GPU needed, nothing assumes two GPUs."""
from __future__ import annotations

import pytest

from pipeline.app.gpu_assignment import (DEFAULT_LOAD, AssignmentError, CameraLoad, assign_cameras,
                                         assignment_for, device_path, expected_load, fail_gpu,
                                         single_gpu_notice)
from pipeline.config import CameraConfig, PipelineConfig


def config(**over: object) -> PipelineConfig:
    data: dict = {"cameras": [{"id": "a", "url": "synthetic:64x48@5"}], "model": {"path": "m.onnx", "labels": ["x"]},
                  "preprocess": {"device": "gpu"}, "decode": {"device": "gpu"}}
    data.update(over)
    return PipelineConfig.model_validate(data)


@pytest.mark.parametrize("over, gpu", [
    ({"decode": {"device": "gpu", "gpu_id": 1}}, 1),  # was: preprocess on 1, model on 0
    ({"gpus": [3, 0]}, 3),
    ({}, 0),
])
def test_one_gpu_id_flows_through_decode_preprocess_and_model(over: dict, gpu: int) -> None:
    path = device_path(config(**over))
    assert (path.gpu, path.decode.gpu_id, path.model_device) == (gpu, gpu, f"gpu:{gpu}")
    assert path.preprocess_device == "gpu"


def test_a_path_on_another_gpu_moves_every_stage() -> None:
    path = device_path(config(), gpu=5)
    assert (path.decode.gpu_id, path.model_device) == (5, "gpu:5")


def test_the_model_stays_on_the_cpu_with_a_cpu_preprocessor() -> None:
    assert device_path(config(preprocess={"device": "cpu"}, gpus=[2])).model_device == "cpu"


def test_expected_load_from_the_url_or_the_default() -> None:
    assert expected_load(CameraConfig(id="s", url="synthetic:1280x720@25")) == 1280 * 720 * 25
    assert expected_load(CameraConfig(id="r", url="rtsp://h/x")) == DEFAULT_LOAD


def cams(loads: list[int], pins: dict[int, int] | None = None) -> list[CameraLoad]:
    pins = pins or {}
    return [CameraLoad(f"c{i:02d}", load, pins.get(i)) for i, load in enumerate(loads)]


@pytest.mark.parametrize("g", range(1, 9))
def test_equal_cameras_spread_evenly_over_g_gpus(g: int) -> None:
    gpus = list(range(10, 10 + g))  # ids need not start at 0
    result = assign_cameras(cams([100] * 20), gpus)
    counts = [len(result.cameras[x]) for x in gpus]
    assert sum(counts) == 20 and max(counts) - min(counts) <= 1
    assert all(result.gpu_of(f"c{i:02d}") in gpus for i in range(20))


def test_heavy_cameras_balance_by_load_not_count() -> None:
    result = assign_cameras(cams([4000, 1000, 1000, 1000, 1000]), [0, 1])
    assert result.loads == {0: 4000, 1: 4000}
    assert result.cameras[0] == ("c00",)


def test_pins_are_honoured_and_the_rest_fill_around_them() -> None:
    result = assign_cameras(cams([100] * 4, pins={0: 1, 1: 1}), [0, 1])
    assert result.gpu_of("c00") == result.gpu_of("c01") == 1
    assert result.cameras[0] == ("c02", "c03")


def test_a_pin_outside_the_gpu_list_is_one_line() -> None:
    with pytest.raises(AssignmentError, match=r"^camera c00: gpu 7 is not one of gpus \[0, 1\]$"):
        assign_cameras(cams([1], pins={0: 7}), [0, 1])


@pytest.mark.parametrize("g", range(1, 9))
def test_failover_moves_only_the_failed_gpus_cameras(g: int) -> None:
    gpus = list(range(g))
    before = assign_cameras(cams([100] * (3 * g), pins={0: 0}), gpus)
    after = fail_gpu(before, cams([100] * (3 * g), pins={0: 0}), failed=0, failover=True)
    assert 0 not in after.gpus
    for other in gpus[1:]:  # the others keep every camera they had
        assert set(before.cameras[other]) <= set(after.cameras[other])
    if g == 1:
        assert set(after.stranded) == set(before.cameras[0])  # nowhere to go
    else:
        assert not after.stranded and all(after.gpu_of(c) in gpus[1:] for c in before.cameras[0])
        counts = [len(after.cameras[x]) for x in gpus[1:]]
        assert max(counts) - min(counts) <= 1


def test_without_failover_the_failed_gpus_cameras_are_stranded() -> None:
    before = assign_cameras(cams([100] * 4), [0, 1])
    after = fail_gpu(before, cams([100] * 4), failed=1, failover=False)
    assert set(after.stranded) == set(before.cameras[1]) and after.cameras[0] == before.cameras[0]


def test_assignment_for_a_config_with_gpus_all() -> None:
    cfg = config(cameras=[{"id": f"k{i}", "url": "synthetic:640x480@10"} for i in range(6)], gpus="all",
                 failover=True)
    assert assignment_for(cfg, visible_gpus=3).gpus == (0, 1, 2)
    with pytest.raises(AssignmentError, match="no GPU is visible"):
        assignment_for(cfg, visible_gpus=0)


def test_the_daemon_says_when_it_runs_one_gpu_of_several() -> None:
    assert single_gpu_notice(config()) is None
    assert single_gpu_notice(config(gpus=[1])) is None
    notice = single_gpu_notice(config(gpus=[1, 0], cameras=[{"id": "p", "url": "rtsp://h/x", "gpu": 0}]))
    assert notice is not None and "GPU 1" in notice and "pins ignored: p" in notice and "\n" not in notice
