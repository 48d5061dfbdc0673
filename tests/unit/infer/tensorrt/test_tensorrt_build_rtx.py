"""The real engine-build path, run with TensorRT-RTX on the CPU.

TensorRT-RTX's Python module (`tensorrt_rtx`, from the `tensorrt-rtx` extra: a 95 MB wheel,
about 230 MB installed) has the same builder API as TensorRT 10 for everything the build uses:
Builder, create_network, OnnxParser and its errors, IBuilderConfig, optimization profiles,
memory pools, timing cache calls, IProgressMonitor, ILogger. It builds on a machine without a
GPU once told which GPU to build for (compute capability SM86 here; it has no Hopper target).
It cannot deserialize or run the engine here (no CUDA driver), and it has no FP16/INT8 builder
flags or INT8 calibrator (strongly typed networks only), so those paths fall back with a warning.

Candidate selection (model.max_candidates, pipeline/infer/candidates.py): the candidates model
that prepare_engine writes is parsed and built here for real, with a fixed and with a run-time
anchor count (TopK with K = Min(max_candidates, N) computed from shapes); the output checked is the
network's as TensorRT parsed it (the built engine itself cannot be deserialized here).

Skipped, with the reason, where tensorrt_rtx is not installed.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.config import CalibrationConfig, ModelConfig, TensorRtConfig
from pipeline.frame import OutputLayout
from pipeline.infer.tensorrt.build import BuildRequest, EngineBuildError, build_engine
from pipeline.infer.tensorrt.engine import prepare_engine
from pipeline.infer.tensorrt.engine_cache import EngineCache, GpuIdentity, file_sha256
from pipeline.infer.tensorrt.progress import PhaseLines, python_logger
from tests.support.tiny_model import build_tiny_yolo_onnx

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is not installed: pip install "
                                                 "'pipeline[tensorrt-rtx]' (95 MB wheel) to run the real build path")

pytestmark = pytest.mark.filterwarnings("ignore:Use Deprecated in TensorRT-RTX:DeprecationWarning")

# What the engine is built for: TensorRT-RTX needs a target GPU when none is present.
GPU = GpuIdentity("cpu-build for sm86", "8.6")


def rtx_target(config: Any) -> None:
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM86, 0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_yolo_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx", input_size=64)


def request_for(path: Path, **kw: Any) -> BuildRequest:
    base = dict(onnx_path=path, input_size=64, num_classes=2, max_batch=4, opt_batch=None, precision="fp32",
                contexts=2, workspace_mib=64, builder_optimization_level=0)
    base.update(kw)
    return BuildRequest(**base)  # type: ignore[arg-type]


def build(path: Path, progress: PhaseLines | None = None, **kw: Any) -> Any:
    return build_engine(trt, request_for(path, **kw), GPU, logger=python_logger(trt), progress=progress,
                        configure=rtx_target)


def test_builds_a_plan_with_the_batch_profile(tiny: Path) -> None:
    lines: list[str] = []
    built = build(tiny, PhaseLines(lines.append, min_interval_s=0.0))
    assert len(built.plan) > 10_000  # a real serialized engine, not a stub
    assert built.input_name == "images" and built.precision == "fp32" and built.warnings == ()
    assert (built.profile.min, built.profile.opt, built.profile.max) == \
        ((1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))
    assert "[start] Building engine" in lines[1] or any(line.startswith("[start] Building engine") for line in lines)
    assert any(line.startswith("[done]  Building engine") for line in lines)  # from IProgressMonitor


def test_two_profiles_make_a_bigger_engine_than_one(tiny: Path) -> None:
    one = build(tiny, contexts=1)
    two = build(tiny, contexts=2)
    assert len(two.plan) > len(one.plan) * 1.5  # the second profile carries its own kernels


def test_opt_batch_from_config_is_used(tiny: Path) -> None:
    assert build(tiny, max_batch=8, opt_batch=3).profile.opt == (3, 3, 64, 64)


def test_fixed_batch_model_gets_a_fixed_profile(tmp_path: Path) -> None:
    fixed = build_tiny_yolo_onnx(tmp_path / "fixed.onnx", input_size=64, batch=2)
    built = build(fixed, max_batch=8)
    assert (built.profile.min_batch, built.profile.opt_batch, built.profile.max_batch) == (2, 2, 2)


def test_fp16_without_the_builder_flag_falls_back_with_a_warning(tiny: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        built = build(tiny, precision="fp16")
    assert built.precision == "fp32"
    assert "no FP16 builder flag" in built.warnings[0] and "TensorRT 1.7" in built.warnings[0]
    assert any("no FP16 builder flag" in r.getMessage() for r in caplog.records)


def test_int8_without_a_calibration_api_falls_back_to_fp32(tiny: Path) -> None:
    built = build(tiny, precision="int8")
    assert built.precision == "fp32"
    assert "no INT8 calibration API" in built.warnings[0] and "no FP16 builder flag" in built.warnings[1]


def unsupported_op_model(path: Path) -> Path:
    node = helper.make_node("FrobnicateX", ["images"], ["out"], name="frob_node_7")
    graph = helper.make_graph([node], "bad", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                            ["b", 3, 64, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 6, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_parser_errors_name_the_node(tmp_path: Path) -> None:
    path = unsupported_op_model(tmp_path / "bad.onnx")
    with pytest.raises(EngineBuildError) as err:
        build(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ONNX parser: node 'frob_node_7' (FrobnicateX, #0): ")
    assert "\n" not in msg


def test_not_an_onnx_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00not a model")
    with pytest.raises(EngineBuildError, match=rf"^{path}: ONNX parser: no graph in the file") as err:
        build(path)
    assert "\n" not in str(err.value)


def test_input_size_mismatch_names_the_config_key(tiny: Path) -> None:
    with pytest.raises(EngineBuildError, match=r"input 'images' is \[-1, 3, 64, 64\]; expected \[B, 3, 96, 96\] "
                                               r"\(model.input_size 96\)"):
        build(tiny, input_size=96)


def test_label_count_mismatch_is_reported(tiny: Path) -> None:
    with pytest.raises(EngineBuildError, match="2 classes, but model.labels has 3"):
        build(tiny, num_classes=3)


def test_tensorrt_log_goes_to_python_logging(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = unsupported_op_model(tmp_path / "bad.onnx")
    logger = python_logger(trt)
    assert python_logger(trt) is logger  # TensorRT keeps the first logger per process: so do we
    with caplog.at_level(logging.DEBUG, logger="pipeline.tensorrt"), pytest.raises(EngineBuildError):
        build_engine(trt, request_for(path), GPU, logger=logger, configure=rtx_target)
    assert "frob_node_7" in logger.last_error or "Plugin not found" in logger.last_error  # kept for messages
    assert any(r.name == "pipeline.tensorrt" and r.levelno == logging.ERROR for r in caplog.records)


def test_cancel_from_the_progress_display_stops_the_build(tiny: Path) -> None:
    lines: list[str] = []
    progress = PhaseLines(lines.append)
    progress.cancel.set()
    with pytest.raises(EngineBuildError, match="TensorRT could not build the engine"):
        build(tiny, progress)


# ------------------------------------------------------------------ cache round trip with real builds


def model_config(path: Path, cache: Path, **kw: Any) -> ModelConfig:
    kw.setdefault("labels", ["a", "b"])
    return ModelConfig(path=path, input_size=64, backend="tensorrt", engine_cache_dir=cache,
                       tensorrt=TensorRtConfig(workspace_mib=64, builder_optimization_level=0), **kw)


def prepare(model: ModelConfig, max_batch: int = 4, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return prepare_engine(trt, model, max_batch, GPU, configure=rtx_target, **kw)


def test_first_start_builds_second_loads_from_cache(tmp_path: Path, tiny: Path) -> None:
    model = model_config(tiny, tmp_path / "engines")
    first = prepare(model)
    assert first.built and first.first_lookup.status == "miss"
    assert first.engine_path.read_bytes() == first.plan
    assert first.metadata["trtexec"].startswith("trtexec --onnx=")
    assert "--minShapes=images:1x3x64x64 --optShapes=images:2x3x64x64 --maxShapes=images:4x3x64x64" \
        in first.metadata["trtexec"]
    second = prepare(model)
    assert not second.built and second.plan == first.plan and second.first_lookup.status == "hit"


def test_corrupt_engine_file_is_rebuilt_not_loaded(tmp_path: Path, tiny: Path) -> None:
    model = model_config(tiny, tmp_path / "engines")
    first = prepare(model)
    first.engine_path.write_bytes(first.plan[: len(first.plan) // 2])
    again = prepare(model)
    assert again.built and again.first_lookup.status == "corrupt"
    assert again.engine_path.read_bytes() == again.plan and len(again.plan) > len(first.plan) // 2


def test_changed_max_batch_builds_a_new_engine_and_says_why(tmp_path: Path, tiny: Path) -> None:
    model = model_config(tiny, tmp_path / "engines")
    first = prepare(model, 4)
    other = prepare(model, 8)
    assert other.built and other.first_lookup.status == "stale"
    assert "max_batch" in other.first_lookup.reason and "opt_batch" in other.first_lookup.reason
    assert other.engine_path != first.engine_path
    assert len(list((tmp_path / "engines").glob("*.engine"))) == 2


def test_edited_onnx_file_is_rebuilt(tmp_path: Path) -> None:
    onnx_path = build_tiny_yolo_onnx(tmp_path / "det.onnx", input_size=64)
    model = model_config(onnx_path, tmp_path / "engines")
    prepare(model)
    build_tiny_yolo_onnx(onnx_path, input_size=64, window=10)  # same name, new weights
    again = prepare(model)
    assert again.built and "onnx_sha256" in again.first_lookup.reason


def test_verify_only_never_builds(tmp_path: Path, tiny: Path) -> None:
    model = model_config(tiny, tmp_path / "engines")
    checked = prepare(model, verify_only=True)
    assert checked.plan is None and checked.first_lookup.status == "miss"
    assert not (tmp_path / "engines").exists() or not list((tmp_path / "engines").glob("*.engine"))


def test_force_rebuilds_a_valid_engine(tmp_path: Path, tiny: Path) -> None:
    model = model_config(tiny, tmp_path / "engines")
    prepare(model)
    forced = prepare(model, force=True)
    assert forced.built and forced.first_lookup.status == "hit"


def test_int8_without_sources_or_cache_is_a_config_error(tmp_path: Path, tiny: Path) -> None:
    model = model_config(tiny, tmp_path / "engines", precision="int8", calibration=CalibrationConfig())
    with pytest.raises(ValueError, match="model.precision int8 needs model.calibration.sources"):
        prepare(model)


def test_timing_cache_file_sits_beside_the_engines(tmp_path: Path, tiny: Path) -> None:
    model = model_config(tiny, tmp_path / "engines")
    prepared = prepare(model)
    timing = EngineCache(tmp_path / "engines").timing_cache_path(prepared.spec)
    assert timing.parent == prepared.engine_path.parent and "sm8.6" in timing.name
    # TensorRT-RTX's timing-cache calls are no-ops that serialize to nothing: a file appears only when
    # the serialized cache has bytes (with TensorRT 10 it always does)
    assert not timing.exists() or timing.stat().st_size > 0


def test_backend_start_without_a_cuda_driver_is_one_clear_error(tmp_path: Path, tiny: Path) -> None:
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from pipeline.infer.tensorrt.backend import TensorRtBackend

    model = model_config(tiny, tmp_path / "engines")
    with pytest.raises(RuntimeError, match=r"^cudaSetDevice\(0\) failed: cudaError\w+") as err:
        TensorRtBackend(model, 4, "gpu", trt_module=trt)  # real cuda-python, no NVIDIA driver here
    assert "\n" not in str(err.value)


def test_the_demo_detector_builds(tmp_path: Path) -> None:
    from pipeline.config import load_config

    config = Path(__file__).resolve().parents[4] / "configs" / "demo.yaml"
    if not (config.parent.parent / "assets" / "demo" / "detector.onnx").is_file():
        pytest.skip("assets/demo/detector.onnx is not there yet")
    cfg = load_config(config)
    model = cfg.model.model_copy(update={"backend": "tensorrt", "engine_cache_dir": tmp_path})
    prepared = prepare(model, cfg.scheduler.max_batch)  # with the default max_candidates 1024
    assert prepared.built and len(prepared.plan) > 1_000_000
    assert prepared.metadata["profile"] == {"min": [1, 3, 320, 320], "opt": [4, 3, 320, 320], "max": [8, 3, 320, 320]}
    assert prepared.metadata["output"] == {"name": "candidates", "shape": [-1, 6, 1024]}  # of 2100 anchors
    assert f"--onnx={prepared.metadata['candidates_onnx']}" in prepared.metadata["trtexec"]
    full = prepare(model.model_copy(update={"max_candidates": None}), cfg.scheduler.max_batch)
    assert full.built and full.metadata["output"] == {"name": "output0", "shape": [-1, 7, 2100]}
    assert f"--onnx={config.parent.parent / 'assets' / 'demo' / 'detector.onnx'}" in full.metadata["trtexec"]


# ------------------------------------------------------------------ candidate selection (model.max_candidates)

THREE = ["a", "b", "c"]  # 4 + 3 = 7 rows, so the model's own output is never mistaken for [B, 6, K]


def dynamic_anchor_model(path: Path, num_classes: int = 3, stride: int = 8) -> Path:
    """A YOLOv8-layout model whose anchor count N follows the input size: [B, 3, H, W] -> [B, 4+C, N],
    N = (H / stride) * (W / stride). The tiny model's N is fixed (its boxes are a constant), so this
    is the case where the candidate graph's K = Min(max_candidates, N) is computed at run time."""
    nodes = [
        helper.make_node("AveragePool", ["images"], ["cells"], kernel_shape=[stride, stride], strides=[stride, stride]),
        helper.make_node("Reshape", ["cells", "flat3"], ["channels"]),  # [B, 3, N]
        helper.make_node("Gather", ["channels", "class_channels"], ["scores"], axis=1),  # [B, C, N]
        helper.make_node("Slice", ["channels", "zero", "one", "one"], ["first"]),  # [B, 1, N]
        helper.make_node("Concat", ["channels", "first", "scores"], ["output0"], axis=1),  # [B, 4 + C, N]
    ]
    inits = [numpy_helper.from_array(np.array([0, 3, -1], np.int64), "flat3"),
             numpy_helper.from_array(np.arange(num_classes, dtype=np.int64) % 3, "class_channels"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one")]
    graph = helper.make_graph(
        nodes, "dynamic_anchors",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + num_classes, "anchors"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_yolo_onnx(tmp_path_factory.mktemp("m3") / "tiny3.onnx", num_classes=3, input_size=64)


def test_candidates_model_builds_into_an_engine_with_a_b_6_k_output(tmp_path: Path, tiny3: Path) -> None:
    prepared = prepare(model_config(tiny3, tmp_path / "engines", labels=THREE, max_candidates=10))
    assert prepared.built and len(prepared.plan) > 10_000 and prepared.layout is OutputLayout.CANDIDATES
    assert prepared.metadata["output"] == {"name": "candidates", "shape": [-1, 6, 10]}  # N 64 -> K 10
    merged = Path(prepared.metadata["candidates_onnx"])
    assert merged.parent == tmp_path / "engines" and merged.name.endswith(".k10.candidates.onnx")
    assert prepared.metadata["trtexec"].startswith(f"trtexec --onnx={merged} ")
    assert (prepared.spec.max_candidates, prepared.spec.candidates_sha256) == (10, file_sha256(merged))


def test_more_candidates_than_anchors_keeps_all_anchors(tmp_path: Path, tiny3: Path) -> None:
    prepared = prepare(model_config(tiny3, tmp_path / "engines", labels=THREE, max_candidates=1024))
    assert prepared.metadata["output"] == {"name": "candidates", "shape": [-1, 6, 64]}


def test_full_output_and_candidates_are_separate_engines(tmp_path: Path, tiny3: Path) -> None:
    full = prepare(model_config(tiny3, tmp_path / "engines", labels=THREE, max_candidates=None))
    assert full.layout is OutputLayout.ANCHORS and full.metadata["output"] == {"name": "output0", "shape": [-1, 7, 64]}
    assert full.metadata["candidates_onnx"] is None and full.metadata["trtexec"].startswith(f"trtexec --onnx={tiny3} ")
    ten = prepare(model_config(tiny3, tmp_path / "engines", labels=THREE, max_candidates=10))
    twenty = prepare(model_config(tiny3, tmp_path / "engines", labels=THREE, max_candidates=20))
    assert ten.built and twenty.built and twenty.first_lookup.status == "stale"
    assert "max_candidates" in twenty.first_lookup.reason
    assert len({full.engine_path, ten.engine_path, twenty.engine_path}) == 3
    assert twenty.metadata["output"]["shape"] == [-1, 6, 20]
    assert not prepare(model_config(tiny3, tmp_path / "engines", labels=THREE, max_candidates=10)).built  # cached


def test_dynamic_anchor_count_builds_with_a_run_time_k(tmp_path: Path) -> None:
    source = dynamic_anchor_model(tmp_path / "dyn.onnx")
    full = prepare(model_config(source, tmp_path / "engines", labels=THREE, max_candidates=None))
    assert full.metadata["output"] == {"name": "output0", "shape": [-1, 7, -1]}  # N unknown until run time
    prepared = prepare(model_config(source, tmp_path / "engines", labels=THREE, max_candidates=10))
    merged = onnx.load(prepared.metadata["candidates_onnx"])
    assert "Min" in {n.op_type for n in merged.graph.node}  # K = Min(10, N), from the input's shape
    assert prepared.built and len(prepared.plan) > 10_000
    assert prepared.metadata["output"] == {"name": "candidates", "shape": [-1, 6, -1]}
    # K reaches TopK as a shape tensor: the output's size follows from the input shape alone (not from
    # the data), so the backend can size its buffers once per profile (it refuses data-dependent shapes)
    network = trt.Builder(python_logger(trt)).create_network(0)
    assert trt.OnnxParser(network, python_logger(trt)).parse_from_file(prepared.metadata["candidates_onnx"])
    topk = [network.get_layer(i) for i in range(network.num_layers)
            if network.get_layer(i).type == trt.LayerType.TOPK]
    # TensorRT parses the ArgMax over the classes as a TopK with a fixed k (no K input); the anchors'
    # TopK takes K = Min(10, N) as its second input
    run_time_k = [layer.get_input(1) for layer in topk if layer.get_input(1) is not None]
    assert len(topk) == 2 and len(run_time_k) == 1 and run_time_k[0].is_shape_tensor


def test_label_count_mismatch_in_the_candidates_path_has_the_same_message(tmp_path: Path, tiny3: Path) -> None:
    with pytest.raises(EngineBuildError) as own:  # inspect_network on TensorRT's parse of the model itself
        build(tiny3, num_classes=2)
    with pytest.raises(EngineBuildError) as merged:  # checked with onnx before candidate selection is appended
        prepare(model_config(tiny3, tmp_path / "engines", labels=["a", "b"], max_candidates=10))
    assert str(merged.value) == str(own.value) == \
        f"{tiny3}: model output 'output0' is [-1, 7, 64]: 3 classes, but model.labels has 2"
