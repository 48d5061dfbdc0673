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
from typing import Any

from pipeline.infer.candidates import load_with_candidates
from pipeline.infer.tensorrt.build import CandidateNetwork, EngineBuildError, label_mismatch
from pipeline.infer.tensorrt.engine_cache import EngineCache, atomic_write_bytes, file_sha256

log = logging.getLogger(__name__)


def candidate_network(source: Path, source_sha256: str, max_candidates: int | None, num_classes: int,
                      cache: EngineCache, *, write: bool = True) -> CandidateNetwork | None:
    """The candidates model for `source`, or None to build the model's own output (switched off, no
    onnx package, not readable as ONNX: the parser reports that, or a model the graph does not fit).

    The label count is checked here, on the model's own output, with inspect_network's message.
    write=False computes the file's path and sha256 without writing it (for verify-only lookups).
    """
    def check_output(name: str, dims: list[Any]) -> None:
        shape = [d if isinstance(d, int) and d > 0 else -1 for d in dims]
        if len(shape) == 3 and shape[1] > 0 and shape[1] != 4 + num_classes:
            raise EngineBuildError(label_mismatch(source, name, shape, num_classes))

    instead = "the engine is built with the model's full output, decoded on the host"
    model = load_with_candidates(source, max_candidates, str(source), check_output, instead)
    if model is None:
        return None
    try:
        data = model.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GB limit, with the external weights loaded in
        log.info("%s: cannot write the model with candidate selection (%s); %s", source, exc, instead)
        return None
    sha = hashlib.sha256(data).hexdigest()
    path = cache.candidates_model_path(source.stem, source_sha256, max_candidates)
    if write and not (path.is_file() and file_sha256(path) == sha):
        atomic_write_bytes(path, data)
        log.info("%s: wrote the model with candidate selection (K %d) to %s", source, max_candidates, path)
    return CandidateNetwork(path=path, sha256=sha, max_candidates=max_candidates)
