"""The ONNX file a TensorRT engine is built from when model.max_candidates is set: the configured
model with candidate selection appended (pipeline/infer/candidates.py), so the engine's output is
[B, 6, K] instead of [B, 4+C, N] and only K candidates per image are copied to the host.

TensorRT's parser reads a file (parse_from_file), so the merged model is written to the engine
cache folder as `<model>.<onnx-sha16>.k<K>.candidates.onnx` (atomically: temporary file + rename).
External weights are loaded into it, so it does not depend on where the source's data files lie.
It is regenerated in memory on every start and rewritten only when its bytes changed (e.g. a new
version of candidates.py); its sha256 is part of the engine key, with K.

A model the graph does not fit (old opset, no fixed 4+C rows, ...) is built with its own output,
with an info log, as the ONNX Runtime backend does.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from pipeline.infer.candidates import CandidateGraphError, append_candidate_selection
from pipeline.infer.trt_build import CandidateNetwork, EngineBuildError, label_mismatch
from pipeline.infer.trt_engine_cache import EngineCache, atomic_write_bytes, file_sha256

log = logging.getLogger(__name__)


def candidate_network(source: Path, source_sha256: str, max_candidates: int | None, num_classes: int,
                      cache: EngineCache, *, write: bool = True) -> CandidateNetwork | None:
    """The candidates model for `source`, or None to build the model's own output (switched off, no
    onnx package, not readable as ONNX: the parser reports that, or a model the graph does not fit).

    The label count is checked here, on the model's own output, with inspect_network's message.
    write=False computes the file's path and sha256 without writing it (for verify-only lookups).
    """
    if not max_candidates:
        return None
    try:
        import onnx
    except ImportError:
        log.warning("%s: the onnx package is missing; the engine is built with the model's full output",
                    source)
        return None
    try:
        model = onnx.load(str(source))  # with external weights, resolved next to the source
    except Exception:  # noqa: BLE001 - not ONNX (or weights missing): TensorRT's parser reports it
        return None
    if model.graph.output:
        raw = model.graph.output[0]
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                for d in raw.type.tensor_type.shape.dim]
        if len(dims) == 3 and dims[1] > 0 and dims[1] != 4 + num_classes:
            raise EngineBuildError(label_mismatch(source, raw.name, dims, num_classes))
    try:
        data = append_candidate_selection(model, max_candidates, str(source)).SerializeToString()
    except CandidateGraphError as exc:
        log.info("%s; the engine is built with the model's full output, decoded on the host", exc)
        return None
    except ValueError as exc:  # protobuf's 2 GB limit, with the external weights loaded in
        log.info("%s: cannot write the model with candidate selection (%s); the engine is built with the "
                 "model's full output, decoded on the host", source, exc)
        return None
    sha = hashlib.sha256(data).hexdigest()
    path = cache.candidates_model_path(source.stem, source_sha256, max_candidates)
    if write and not (path.is_file() and file_sha256(path) == sha):
        atomic_write_bytes(path, data)
        log.info("%s: wrote the model with candidate selection (K %d) to %s", source, max_candidates, path)
    return CandidateNetwork(path=path, sha256=sha, max_candidates=max_candidates)
