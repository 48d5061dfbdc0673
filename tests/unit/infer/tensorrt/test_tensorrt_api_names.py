"""Static check: every TensorRT Python name the backend calls exists in the TensorRT 10 bindings.

TensorRT's bindings wheel (tensorrt-cu13-bindings, 1.3 MB, on PyPI) cannot be imported without
libnvinfer, which is not on any registry we can reach, but its extension module's string table
and its __init__.py name every class, method and enum value it exposes. Point
TRT_BINDINGS_DIR at an unpacked wheel (the folder holding tensorrt_bindings/) to run this:

    pip download --no-deps tensorrt-cu13-bindings==10.16.1.11 -d /tmp/b && unzip /tmp/b/*.whl -d /tmp/b/x
    TRT_BINDINGS_DIR=/tmp/b/x python3 -m pytest tests/unit/infer/tensorrt/test_tensorrt_api_names.py

Names are matched as substrings (the linker merges string literals that end another literal, so
an exact-line match would miss e.g. "INT8" inside "kINT8"). The second test keeps the list honest:
each name must really occur in pipeline/infer.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# attribute names used on tensorrt objects by pipeline/infer/{trt_build,trt_calibrator,trt_progress,tensorrt}.py
USED = """
Builder create_network OnnxParser parse_from_file num_errors get_error desc node node_name node_operator
num_inputs get_input num_outputs get_output num_layers create_builder_config set_memory_pool_limit
MemoryPoolType WORKSPACE builder_optimization_level create_optimization_profile set_shape
add_optimization_profile platform_has_fast_fp16 platform_has_fast_int8 BuilderFlag FP16 INT8 set_flag
nptype float16 set_calibration_profile int8_calibrator IInt8EntropyCalibrator2 get_batch_size get_batch
read_calibration_cache write_calibration_cache create_timing_cache set_timing_cache get_timing_cache serialize
IProgressMonitor phase_start step_complete phase_finish progress_monitor build_serialized_network ILogger
Runtime deserialize_cuda_engine num_io_tensors get_tensor_name get_tensor_mode TensorIOMode get_tensor_dtype
get_tensor_profile_shape num_optimization_profiles create_execution_context set_optimization_profile_async
set_input_shape get_tensor_shape set_tensor_address execute_async_v3
""".split()

_PIPELINE = Path(__file__).resolve().parents[4] / "pipeline"
SOURCES = [_PIPELINE / "infer" / "tensorrt" / name
           for name in ("build.py", "calibrator.py", "progress.py", "backend.py")] + [
    _PIPELINE / "tools" / "build_engine.py"]


def bindings_text(folder: Path) -> str:
    so = next(folder.glob("tensorrt_bindings/tensorrt*.so"))
    printable = re.findall(rb"[\x20-\x7e]{4,}", so.read_bytes())
    return b"\n".join(printable).decode() + (folder / "tensorrt_bindings" / "__init__.py").read_text()


@pytest.mark.skipif(not os.environ.get("TRT_BINDINGS_DIR"), reason="TRT_BINDINGS_DIR not set (see module doc)")
def test_every_name_we_call_exists_in_the_tensorrt_bindings() -> None:
    text = bindings_text(Path(os.environ["TRT_BINDINGS_DIR"]))
    version = re.search(r"__version__ = \"([^\"]+)\"", text)
    missing = [name for name in USED if name not in text]
    assert missing == [], f"not in TensorRT {version.group(1) if version else '?'} bindings: {missing}"


def test_the_list_names_only_what_the_code_uses() -> None:
    code = "\n".join(p.read_text() for p in SOURCES)
    unused = [name for name in USED if not re.search(rf"\b{re.escape(name)}\b", code)]
    assert unused == []
