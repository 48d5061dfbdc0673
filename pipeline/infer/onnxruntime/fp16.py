"""fp32 -> fp16 ONNX conversion for GPU inference, cached by the source model's sha256.

The converted model takes a float16 input (the preprocessor emits float16 when
model.precision is fp16, so the GPU buffer binds without a cast) and keeps float32 outputs
(the postprocess wants float32 and the outputs are small).
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONVERTER_TAG = "fp16v1"  # bump when the conversion settings change, so old cache entries are not reused


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pipeline" / "models"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fp16_model_path(source: Path, cache_dir: Path | None = None) -> Path:
    """Path of the fp16 version of `source`, converting on first use. A model whose inputs are
    not float32 (already fp16, or quantised) is returned as is."""
    import onnx

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / f"{source.stem}.{file_sha256(source)[:16]}.{CONVERTER_TAG}.onnx"
    if target.is_file():
        problem = _cache_problem(target)
        if problem is None:
            log.info("fp16 model for %s: using cached %s", source, target)
            return target
        log.warning("fp16 model cache %s %s: converting again", target, problem)
    model = onnx.load(str(source))
    float_inputs = [i for i in model.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
                    and i.name not in {t.name for t in model.graph.initializer}]
    if not float_inputs:
        log.info("%s: input is not float32; running it without fp16 conversion", source)
        return source
    converted = _convert(model, keep_io_types=[o.name for o in model.graph.output])
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    onnx.save(converted, str(partial))
    _checksum_path(target).write_text(file_sha256(partial) + "\n")  # before the model: see _cache_problem
    os.replace(partial, target)  # atomic: a concurrent reader never sees half a file
    log.info("converted %s to fp16: %s", source, target)
    return target


def _checksum_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _cache_problem(target: Path) -> str | None:
    """Why a cached fp16 model must not be used (None: it is the file we wrote). The checksum is
    written before the model is moved into place, so a model without one was never finished by us
    (or predates the checksum) and a mismatch is a corrupt or truncated file."""
    try:
        expected = _checksum_path(target).read_text().strip()
    except OSError:
        return "has no checksum"
    try:
        actual = file_sha256(target)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None if actual == expected else "does not match its checksum (corrupt or truncated)"


def _convert(model: Any, keep_io_types: list[str]) -> Any:
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        try:
            from onnxconverter_common.float16 import convert_float_to_float16
        except ImportError:
            raise RuntimeError("model.precision fp16 needs onnxruntime.transformers or onnxconverter-common "
                               "to convert the fp32 model") from None
    return convert_float_to_float16(model, keep_io_types=keep_io_types)
