"""Backend registry, device parsing, the TensorRT seam, and GPU gating on a CPU-only onnxruntime."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from pipeline.config import ModelConfig
from pipeline.infer import Backend, create_backend, known_backends, register_backend
from pipeline.infer.base import backend_class, parse_device
from pipeline.infer.plugins import BACKEND_KEYS, BACKEND_PLUGINS
from tests.support.tiny_model import build_tiny_yolo_onnx


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_yolo_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx")


def config(path: Path, backend: str = "onnxruntime") -> ModelConfig:
    return ModelConfig(path=path, labels=["a", "b"], input_size=64, backend=backend)


def test_registry_keys_are_the_schema_keys() -> None:
    """model.backend accepts exactly the backends create_backend can build, and each plug-in's
    implementation registers a class under its own key."""
    schema_keys = set(get_args(ModelConfig.model_fields["backend"].annotation))
    assert schema_keys == set(known_backends()) == set(BACKEND_KEYS) == {"onnxruntime", "tensorrt"}
    for plugin in BACKEND_PLUGINS:
        assert backend_class(plugin.key).type_key == plugin.key
        assert ModelConfig.model_fields[plugin.key].annotation is plugin.settings


def test_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(ValueError) as err:
        backend_class("openvino")
    msg = str(err.value)
    assert "'openvino'" in msg and "onnxruntime" in msg and "tensorrt" in msg and "\n" not in msg


def test_register_backend_needs_a_declared_type_key_and_refuses_duplicates() -> None:
    backend_class("onnxruntime")  # the real class first, so the impostor below is the duplicate
    with pytest.raises(TypeError, match="type_key"):
        @register_backend
        class Nameless(Backend):  # noqa: F841
            pass
    with pytest.raises(TypeError, match="not declared in pipeline/infer/plugins.py"):
        @register_backend
        class Undeclared(Backend):  # noqa: F841
            type_key = "openvino"
    with pytest.raises(TypeError, match="already registered"):
        @register_backend
        class Impostor(Backend):  # noqa: F841
            type_key = "onnxruntime"


def test_the_plugin_declarations_are_light() -> None:
    """The config schema imports them: no numpy, no runtime (checked in a fresh interpreter)."""
    code = ("import sys; import pipeline.config; "
            "heavy = {'numpy', 'onnxruntime', 'tensorrt', 'av', 'cuda'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])


@pytest.mark.parametrize("text, parsed", [("cpu", ("cpu", 0)), ("gpu", ("gpu", 0)), ("cuda:1", ("gpu", 1)),
                                          ("GPU:2", ("gpu", 2))])
def test_parse_device(text: str, parsed: tuple[str, int]) -> None:
    assert parse_device(text) == parsed


@pytest.mark.parametrize("text", ["tpu", "gpu:x", "cpu:1", ""])
def test_parse_device_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="expected cpu, gpu or gpu:N"):
        parse_device(text)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_without_the_extra_says_how_to_get_it(tiny: Path) -> None:
    with pytest.raises(RuntimeError, match=r"tensorrt needs the \[tensorrt\] extra"):
        create_backend(config(tiny, backend="tensorrt"), 4, "gpu")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed")
def test_gpu_device_without_onnxruntime_gpu_is_a_clear_error(tiny: Path) -> None:
    with pytest.raises(RuntimeError, match=r"device gpu needs onnxruntime-gpu \(the \[gpu\] extra\)"):
        create_backend(config(tiny), 4, "gpu")


class FakeCudaBuffer:
    """Only the interface; the pointer is never dereferenced on the CPU path."""

    __cuda_array_interface__ = {"shape": (1, 3, 64, 64), "typestr": "<f4", "data": (0, False), "version": 3}


def test_device_buffer_on_a_cpu_backend_is_refused(tiny: Path) -> None:
    from pipeline.frame import Frame, LetterboxTransform, TensorBatch

    be = create_backend(config(tiny), 4, "cpu", intra_op_threads=1)
    batch = TensorBatch((Frame("c", 0, None, 0.0, 64, 64, None),), (LetterboxTransform.fit(64, 64, 64),),
                        FakeCudaBuffer(), 0.0)
    with pytest.raises(ValueError, match="needs the model on device gpu"):
        be.infer(batch)
    assert be.input_dtype == np.dtype(np.float32)
