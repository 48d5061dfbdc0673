"""The candidates model the TensorRT engine is built from (trt_candidates.py) and its part in the
engine key (engine_target). Pure Python with onnx and onnxruntime: no TensorRT needed. That the
file really builds with TensorRT's parser and builder is test_tensorrt_build_rtx.py's job."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pipeline.config import ModelConfig
from pipeline.infer.tensorrt.build import (BuildRequest, CandidateNetwork, EngineBuildError, inspect_network,
                                      label_mismatch)
from pipeline.infer.tensorrt.candidates import candidate_network
from pipeline.infer.tensorrt.engine import engine_target
from pipeline.infer.tensorrt.engine_cache import EngineCache, EngineSpec, GpuIdentity, file_sha256
from tests.support.tiny_model import build_tiny_yolo_onnx, tiny_yolo_reference

GPU = GpuIdentity("NVIDIA H200", "9.0")


@pytest.fixture(scope="module")
def tiny3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_yolo_onnx(tmp_path_factory.mktemp("m") / "tiny3.onnx", num_classes=3, input_size=64)


def network(source: Path, cache: Path, k: int | None = 10, classes: int = 3, write: bool = True
            ) -> CandidateNetwork | None:
    return candidate_network(source, file_sha256(source), k, classes, EngineCache(cache), write=write)


def test_writes_the_candidates_model_beside_the_engines(tmp_path: Path, tiny3: Path) -> None:
    net = network(tiny3, tmp_path / "engines")
    assert net is not None and net.max_candidates == 10
    assert net.path == tmp_path / "engines" / f"tiny3.{file_sha256(tiny3)[:16]}.k10.candidates.onnx"
    assert file_sha256(net.path) == net.sha256
    out = onnx.load(str(net.path)).graph.output
    assert [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in out] == \
        [("candidates", ["batch", 6, 10])]


def test_the_file_runs_and_keeps_the_k_best_anchors(tmp_path: Path, tiny3: Path) -> None:
    net = network(tiny3, tmp_path)
    assert net is not None
    x = np.random.default_rng(3).random((2, 3, 64, 64), dtype=np.float32)
    got = ort.InferenceSession(str(net.path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    full = tiny_yolo_reference(x, num_classes=3)
    best = full[:, 4:].max(axis=1)
    np.testing.assert_allclose(got[:, 4], -np.sort(-best, axis=1)[:, :10], rtol=1e-6)  # scores, best first


def test_an_unchanged_file_is_kept_and_a_changed_one_rewritten(tmp_path: Path, tiny3: Path) -> None:
    first = network(tiny3, tmp_path)
    assert first is not None
    before = first.path.stat()
    again = network(tiny3, tmp_path)
    assert again == first and first.path.stat().st_mtime_ns == before.st_mtime_ns
    first.path.write_bytes(b"half a model")
    assert network(tiny3, tmp_path) == first and file_sha256(first.path) == first.sha256
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no temporary files left


def test_write_false_computes_the_same_key_and_writes_nothing(tmp_path: Path, tiny3: Path) -> None:
    dry = network(tiny3, tmp_path / "a", write=False)
    wet = network(tiny3, tmp_path / "b")
    assert dry is not None and wet is not None and dry.sha256 == wet.sha256
    assert not (tmp_path / "a").exists()


def test_switched_off_gives_none_and_no_file(tmp_path: Path, tiny3: Path) -> None:
    assert network(tiny3, tmp_path, k=None) is None
    assert not list(tmp_path.iterdir())


def test_label_count_is_checked_on_the_models_own_output(tmp_path: Path, tiny3: Path) -> None:
    with pytest.raises(EngineBuildError) as err:
        network(tiny3, tmp_path, classes=2)
    assert str(err.value) == label_mismatch(tiny3, "output0", [-1, 7, 64], 2)  # inspect_network's message
    assert str(err.value) == f"{tiny3}: model output 'output0' is [-1, 7, 64]: 3 classes, but model.labels has 2"


def test_a_model_the_graph_does_not_fit_builds_its_full_output(tmp_path: Path, tiny3: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    model = onnx.load(str(tiny3))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "rows"  # 4+C no longer fixed
    odd = tmp_path / "odd.onnx"
    onnx.save(model, str(odd))
    with caplog.at_level(logging.INFO):
        target = engine_target("10.16", ModelConfig(path=odd, labels=["a", "b", "c"], input_size=64,
                                                    engine_cache_dir=tmp_path / "engines", max_candidates=10), 4, GPU)
    assert target.request.candidates is None and target.request.network_path == odd
    assert (target.spec.max_candidates, target.spec.candidates_sha256) == (0, "")
    assert any(r.levelno == logging.INFO and str(odd) in r.getMessage() and "full output" in r.getMessage()
               for r in caplog.records)


def test_external_weights_are_carried_into_the_candidates_model(tmp_path: Path, tiny3: Path) -> None:
    model = onnx.load(str(tiny3))
    source = tmp_path / "src" / "ext.onnx"
    source.parent.mkdir()
    onnx.save(model, str(source), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.weights",
              size_threshold=0)
    assert (source.parent / "ext.weights").stat().st_size > 1000
    net = network(source, tmp_path / "engines")
    assert net is not None
    merged = onnx.load(str(net.path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in merged.graph.initializer)
    x = np.random.default_rng(4).random((1, 3, 64, 64), dtype=np.float32)
    got = ort.InferenceSession(str(net.path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert got.shape == (1, 6, 10)


def test_the_engine_key_changes_with_max_candidates(tmp_path: Path, tiny3: Path) -> None:
    def spec(k: int | None) -> EngineSpec:
        model = ModelConfig(path=tiny3, labels=["a", "b", "c"], input_size=64, engine_cache_dir=tmp_path,
                            max_candidates=k)
        return engine_target("10.16", model, 4, GPU).spec

    specs = {k: spec(k) for k in (None, 10, 20)}
    assert [s.max_candidates for s in specs.values()] == [0, 10, 20]
    assert len({s.key() for s in specs.values()}) == 3
    assert spec(10).key() == specs[10].key()  # and stays the same for the same K
    assert len({s.onnx_sha256 for s in specs.values()}) == 1  # the source model is the same one


def parsed(output_shape: tuple[int, ...]) -> SimpleNamespace:
    """What inspect_network reads of a parsed TensorRT network (stand-in: shapes only)."""
    tensor = SimpleNamespace
    return SimpleNamespace(num_inputs=1, num_layers=9, num_outputs=1,
                           get_input=lambda i: tensor(name="images", shape=(-1, 3, 64, 64)),
                           get_output=lambda i: tensor(name="candidates", shape=output_shape))


@pytest.mark.parametrize("shape, ok", [((-1, 6, 10), True), ((-1, 6, -1), True), ((-1, 6, 3), True),
                                       ((-1, 6, 11), False), ((-1, 7, 10), False), ((-1, 6), False)])
def test_inspect_network_wants_b_6_k_from_the_candidates_model(shape: tuple[int, ...], ok: bool) -> None:
    net = CandidateNetwork(Path("/c/det.k10.candidates.onnx"), "b" * 64, 10)
    request = BuildRequest(Path("/m/det.onnx"), 64, 3, 4, None, "fp32", 2, 64, 0, candidates=net)
    if ok:
        assert inspect_network(parsed(shape), request) == ("images", None)
    else:
        with pytest.raises(EngineBuildError, match=r"^/m/det.onnx: output 'candidates' of the candidates model "
                                                   r"/c/det.k10.candidates.onnx is \[.*\]; expected \[B, 6, K\] "
                                                   r"with K <= 10 \(model.max_candidates\)$"):
            inspect_network(parsed(shape), request)
