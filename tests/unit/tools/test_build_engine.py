"""`pipeline build-engine`: the real command without TensorRT installed, the real cuda-python
without a driver (where cuda-python is installed), and the verify path against the MOCK
TensorRT runtime (mock_tensorrt.py; TensorRT cannot execute here). The engines are seeded under
the key the daemon's backend computes (engine_target), so a --check hit shows the command looks
for the engine the daemon loads, model.max_candidates included."""
from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.tools.build_engine import NOT_INSTALLED, build_engine_command
from pipeline.infer.tensorrt.cuda import gpu_identity
from pipeline.infer.tensorrt.engine import engine_target
from tests.support.tiny_model import INPUT_NAME, build_tiny_yolo_onnx
from tests.support.mock_tensorrt import FakeCudaRuntime, FakeTensorRt, fake_plan


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    build_tiny_yolo_onnx(tmp_path / "tiny.onnx", input_size=64)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("cameras: [{id: a, url: synthetic:64x64}]\n"
                   "model: {path: tiny.onnx, labels: [a, b], input_size: 64, backend: tensorrt,\n"
                   "        engine_cache_dir: engines}\n"
                   "scheduler: {max_batch: 4}\n")
    return cfg


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_without_tensorrt_says_how_to_get_it_in_one_line(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build-engine", str(config_file)]) == 1
    err = capsys.readouterr().err
    assert err == NOT_INSTALLED + "\n"
    assert "pip install 'pipeline[tensorrt]'" in err


def test_bad_config_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("cameras: [{id: a, url: synthetic:64x64}]\nmodel: {path: m.onnx, labels: [a], tensorrt: {x: 1}}\n")
    assert main(["build-engine", str(cfg)]) == 2
    assert "model.tensorrt.x: unknown key 'x'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None,
                    reason="cuda-python is not installed")
def test_real_cuda_python_without_a_driver_is_a_one_line_error(config_file: Path) -> None:
    from types import SimpleNamespace

    err = io.StringIO()
    code = build_engine_command(load_config(config_file), str(config_file), err=err,
                                trt_module=SimpleNamespace(__version__="unused"))
    assert code == 1
    line = err.getvalue()
    assert line.startswith("pipeline build-engine: no usable GPU 0: cudaSetDevice(0) failed: cudaError")
    assert line.count("\n") == 1


def seed(config_file: Path, rt: FakeCudaRuntime, trt: FakeTensorRt, plan: bytes | None = None) -> Path:
    """Store a fake plan where the daemon's backend looks for it (same key as TensorRtBackend's start)."""
    cfg = load_config(config_file)
    target = engine_target(trt.__version__, cfg.model, cfg.scheduler.max_batch, gpu_identity(rt, 0))
    plan = plan if plan is not None else fake_plan(str(target.request.network_path), INPUT_NAME, (1, 2, 4), 2, 64)
    return target.cache.store(Path(cfg.model.path).stem, target.spec, plan)


def test_check_finds_and_verifies_a_cached_engine(config_file: Path) -> None:
    rt = FakeCudaRuntime()
    trt = FakeTensorRt(rt)
    path = seed(config_file, rt, trt)
    out, err = io.StringIO(), io.StringIO()
    code = build_engine_command(load_config(config_file), str(config_file), check_only=True, out=out, err=err,
                                trt_module=trt, cuda_runtime=rt)
    assert code == 0, err.getvalue()
    assert out.getvalue().startswith(f"engine ready: {path} (verified from cache; fp32, top 1024 candidates, "
                                     f"batch 1/2/4, 2 profile(s), TensorRT 10.99.0-fake, NVIDIA H200 sm 9.0)")
    assert len(trt.engines) == 1  # really deserialized, not only checksummed
    assert trt.engines[0].plan["onnx"].endswith(".k1024.candidates.onnx")  # the default model.max_candidates


def test_check_wants_the_engine_for_the_configured_max_candidates(config_file: Path) -> None:
    rt = FakeCudaRuntime()
    seed(config_file, rt, FakeTensorRt(rt))  # for the default K 1024
    config_file.write_text(config_file.read_text().replace("engine_cache_dir: engines", "engine_cache_dir: engines, "
                                                                                        "max_candidates: 16"))
    err = io.StringIO()
    code = build_engine_command(load_config(config_file), str(config_file), check_only=True, err=err,
                                trt_module=FakeTensorRt(rt), cuda_runtime=rt)
    assert code == 1
    assert "(stale: cached engine(s) for tiny were built with other candidates_sha256, max_candidates)" \
        in err.getvalue()
    assert not list((config_file.parent / "engines").glob("*.k16.*"))  # --check writes no candidates model


def test_check_of_a_full_output_engine(config_file: Path) -> None:
    config_file.write_text(config_file.read_text().replace("engine_cache_dir: engines", "engine_cache_dir: engines, "
                                                                                        "max_candidates: null"))
    rt = FakeCudaRuntime()
    trt = FakeTensorRt(rt)
    seed(config_file, rt, trt)
    out = io.StringIO()
    assert build_engine_command(load_config(config_file), str(config_file), check_only=True, out=out,
                                err=io.StringIO(), trt_module=trt, cuda_runtime=rt) == 0
    assert "(verified from cache; fp32, full output, batch 1/2/4" in out.getvalue()


def test_check_without_an_engine_says_what_to_run(config_file: Path) -> None:
    rt = FakeCudaRuntime()
    err = io.StringIO()
    code = build_engine_command(load_config(config_file), str(config_file), check_only=True, err=err,
                                trt_module=FakeTensorRt(rt), cuda_runtime=rt)
    assert code == 1
    assert "no valid engine for" in err.getvalue() and "(miss: no cached engine)" in err.getvalue()
    assert err.getvalue().rstrip().endswith(f"run: pipeline build-engine {config_file}")


def test_check_refuses_an_engine_that_does_not_deserialize(config_file: Path) -> None:
    rt = FakeCudaRuntime()
    seed(config_file, rt, FakeTensorRt(rt), plan=b"checksummed but not a plan")
    err = io.StringIO()
    code = build_engine_command(load_config(config_file), str(config_file), check_only=True, err=err,
                                trt_module=FakeTensorRt(rt), cuda_runtime=rt)
    assert code == 1 and "does not deserialize" in err.getvalue()


def test_note_when_the_config_does_not_use_tensorrt(config_file: Path) -> None:
    config_file.write_text(config_file.read_text().replace("backend: tensorrt", "backend: onnxruntime"))
    rt = FakeCudaRuntime()
    trt = FakeTensorRt(rt)
    seed(config_file, rt, trt)
    err = io.StringIO()
    assert build_engine_command(load_config(config_file), str(config_file), check_only=True, out=io.StringIO(),
                                err=err, trt_module=trt, cuda_runtime=rt) == 0
    assert "has model.backend onnxruntime; building the tensorrt engine anyway" in err.getvalue()
