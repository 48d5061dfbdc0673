"""Engine cache for backend tensorrt: keys, profile shapes, file handling. Pure Python, no TensorRT."""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path

import pytest

from pipeline.infer.tensorrt import engine_cache as trt_engine_cache
from pipeline.infer.tensorrt.build import BuildRequest, CandidateNetwork
from pipeline.infer.tensorrt.engine import trtexec_command
from pipeline.infer.tensorrt.engine_cache import (EngineCache, EngineSpec, GpuIdentity, ProfileShapes, atomic_write_bytes,
                                             batch_profile, calibration_fingerprint, default_engine_cache_dir)

SPEC = EngineSpec(onnx_sha256="a" * 64, tensorrt_version="10.16.1.11", gpu_name="NVIDIA H200",
                  compute_capability="9.0", precision="fp16", input_size=640, min_batch=1, opt_batch=8,
                  max_batch=16, profiles=2, workspace_mib=1024, builder_optimization_level=3, calibration="")


def changed(spec: EngineSpec, name: str) -> EngineSpec:
    value = getattr(spec, name)
    new = value + 1 if isinstance(value, int) else value + "x"
    return dataclasses.replace(spec, **{name: new})


# ------------------------------------------------------------------ keys


def test_key_is_stable_for_an_equal_spec() -> None:
    assert SPEC.key() == dataclasses.replace(SPEC).key()
    assert len(SPEC.key()) == 64


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(EngineSpec)])
def test_every_component_changes_the_key(name: str) -> None:
    assert changed(SPEC, name).key() != SPEC.key()


def test_the_key_covers_what_the_issue_names() -> None:
    names = {f.name for f in dataclasses.fields(EngineSpec)}
    assert {"onnx_sha256", "tensorrt_version", "gpu_name", "compute_capability", "precision", "min_batch",
            "opt_batch", "max_batch", "workspace_mib", "builder_optimization_level", "max_candidates",
            "candidates_sha256"} <= names


def test_calibration_fingerprint_follows_sources_frames_and_batch() -> None:
    base = calibration_fingerprint(["a.mp4"], 500, 8)
    assert base == calibration_fingerprint(["a.mp4"], 500, 8)
    assert len({base, calibration_fingerprint(["b.mp4"], 500, 8), calibration_fingerprint(["a.mp4"], 400, 8),
                calibration_fingerprint(["a.mp4"], 500, 4)}) == 4


# ------------------------------------------------------------------ profile shapes


def test_profile_defaults_to_half_the_max_batch() -> None:
    p = batch_profile(16, 640)
    assert (p.min, p.opt, p.max) == ((1, 3, 640, 640), (8, 3, 640, 640), (16, 3, 640, 640))


@pytest.mark.parametrize("max_batch, opt", [(1, 1), (3, 1), (5, 2)])
def test_profile_opt_is_never_zero(max_batch: int, opt: int) -> None:
    assert batch_profile(max_batch, 320).opt_batch == opt


def test_configured_opt_batch_is_used_and_checked() -> None:
    assert batch_profile(16, 320, opt_batch=12).opt == (12, 3, 320, 320)
    with pytest.raises(ValueError, match=r"model.tensorrt.opt_batch 17 must be between 1 and scheduler.max_batch \(16\)"):
        batch_profile(16, 320, opt_batch=17)


def test_fixed_batch_model_pins_the_profile() -> None:
    p = batch_profile(16, 320, opt_batch=3, fixed_batch=4)
    assert (p.min_batch, p.opt_batch, p.max_batch) == (4, 4, 4)


def test_profile_shape_order_is_enforced() -> None:
    with pytest.raises(ValueError, match="1 <= min <= opt <= max"):
        ProfileShapes(2, 1, 4)


# ------------------------------------------------------------------ cache folder


def test_default_dir_prefers_systemd_state_directory() -> None:
    assert default_engine_cache_dir({"STATE_DIRECTORY": "/var/lib/pipeline:/var/lib/other", "HOME": "/h"}) == \
        Path("/var/lib/pipeline/engines")


def test_default_dir_falls_back_to_the_user_cache() -> None:
    assert default_engine_cache_dir({"HOME": "/home/op"}) == Path("/home/op/.cache/pipeline/engines")
    assert default_engine_cache_dir({"HOME": "/home/op", "XDG_CACHE_HOME": "/c"}) == Path("/c/pipeline/engines")


def test_gpu_identity_slug_and_capability() -> None:
    gpu = GpuIdentity("NVIDIA H200 NVL", "9.0")
    assert gpu.slug == "nvidia-h200-nvl" and gpu.capability == (9, 0)


# ------------------------------------------------------------------ atomic writes


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.engine"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["x.engine"]  # no temporary files left


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.engine"
    atomic_write_bytes(target, b"old engine")

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trt_engine_cache.os, "replace", crash)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new engine")
    assert target.read_bytes() == b"old engine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.engine"]


# ------------------------------------------------------------------ lookup


def stored(tmp_path: Path, plan: bytes = b"PLAN" * 100) -> EngineCache:
    cache = EngineCache(tmp_path / "engines")
    cache.store("detector", SPEC, plan, effective_precision="fp16")
    return cache


def test_miss_then_hit_returns_exactly_the_stored_plan(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    first = cache.lookup("detector", SPEC)
    assert first.status == "miss" and first.plan is None
    cache.store("detector", SPEC, b"PLAN" * 100, effective_precision="fp16")
    hit = cache.lookup("detector", SPEC)
    assert hit.status == "hit" and hit.plan == b"PLAN" * 100
    assert hit.metadata is not None and hit.metadata["effective_precision"] == "fp16"
    assert hit.engine_path.name == f"detector.{SPEC.key()[:16]}.engine"


def test_truncated_engine_is_corrupt_not_loaded(tmp_path: Path) -> None:
    cache = stored(tmp_path)
    path = cache.engine_path("detector", SPEC)
    path.write_bytes(path.read_bytes()[:-7])
    got = cache.lookup("detector", SPEC)
    assert got.status == "corrupt" and got.plan is None and "sha256" in got.reason


def test_same_size_bit_flip_is_corrupt(tmp_path: Path) -> None:
    cache = stored(tmp_path)
    path = cache.engine_path("detector", SPEC)
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    assert cache.lookup("detector", SPEC).status == "corrupt"


def test_garbage_metadata_is_corrupt(tmp_path: Path) -> None:
    cache = stored(tmp_path)
    cache.metadata_path("detector", SPEC).write_text("{not json")
    got = cache.lookup("detector", SPEC)
    assert got.status == "corrupt" and "metadata unreadable" in got.reason


def test_engine_without_metadata_counts_as_an_interrupted_write(tmp_path: Path) -> None:
    cache = stored(tmp_path)
    cache.metadata_path("detector", SPEC).unlink()
    got = cache.lookup("detector", SPEC)
    assert got.status == "corrupt" and "without metadata" in got.reason


def test_metadata_for_another_spec_is_stale(tmp_path: Path) -> None:
    cache = stored(tmp_path)
    meta_path = cache.metadata_path("detector", SPEC)
    meta = json.loads(meta_path.read_text())
    meta["spec"]["max_batch"] = 32  # e.g. a hand-copied file
    meta_path.write_text(json.dumps(meta))
    assert cache.lookup("detector", SPEC).status == "stale"


@pytest.mark.parametrize("name", ["tensorrt_version", "gpu_name", "compute_capability", "max_batch", "onnx_sha256"])
def test_engine_for_other_settings_is_reported_stale_and_not_loaded(tmp_path: Path, name: str) -> None:
    cache = stored(tmp_path)
    other = changed(SPEC, name)
    got = cache.lookup("detector", other)
    assert got.status == "stale" and got.plan is None
    assert name in got.reason  # says what changed, e.g. "built with other tensorrt_version"


def test_changed_calibration_cache_makes_the_engine_stale(tmp_path: Path) -> None:
    calib = tmp_path / "detector.calib"
    calib.write_bytes(b"TRT-1016-EntropyCalibration2\nimages: 3c010a14\n")
    cache = EngineCache(tmp_path / "engines")
    cache.store("detector", SPEC, b"PLAN", calibration_cache_sha256=trt_engine_cache.file_sha256(calib))
    assert cache.lookup("detector", SPEC, calib).status == "hit"
    calib.write_bytes(b"TRT-1016-EntropyCalibration2\nimages: 3c010a99\n")
    got = cache.lookup("detector", SPEC, calib)
    assert got.status == "stale" and "calibration cache" in got.reason


def test_invalidate_removes_the_entry(tmp_path: Path) -> None:
    cache = stored(tmp_path)
    cache.invalidate("detector", SPEC)
    assert cache.lookup("detector", SPEC).status == "miss"


def test_model_names_with_glob_characters_do_not_confuse_the_stale_scan(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.store("det[1]", SPEC, b"PLAN")
    assert cache.lookup("det[1]", SPEC).status == "hit"
    assert cache.lookup("det[1]", changed(SPEC, "max_batch")).status == "stale"
    assert cache.lookup("det1", SPEC).status == "miss"


def test_timing_cache_is_per_gpu_and_tensorrt_version(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.read_timing_cache(SPEC) is None
    cache.write_timing_cache(SPEC, b"timings")
    assert cache.read_timing_cache(SPEC) == b"timings"
    assert cache.read_timing_cache(dataclasses.replace(SPEC, max_batch=4)) == b"timings"  # any network
    assert cache.read_timing_cache(changed(SPEC, "tensorrt_version")) is None
    assert cache.read_timing_cache(changed(SPEC, "gpu_name")) is None


def test_build_lock_is_exclusive_across_threads(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    order: list[str] = []
    entered = threading.Event()

    def second() -> None:
        with cache.build_lock("detector", SPEC):
            order.append("second")

    with cache.build_lock("detector", SPEC):
        t = threading.Thread(target=second)
        t.start()
        entered.wait(0.3)  # give the thread the chance to (wrongly) get in
        order.append("first")
    t.join(5)
    assert order == ["first", "second"]


def test_lock_file_lives_beside_the_engine(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "e")
    with cache.build_lock("detector", SPEC):
        assert cache.lock_path("detector", SPEC).exists()
    assert os.access(cache.lock_path("detector", SPEC), os.W_OK)


# ------------------------------------------------------------------ trtexec


def test_trtexec_command_matches_the_build() -> None:
    request = BuildRequest(onnx_path=Path("/m/det.onnx"), input_size=640, num_classes=80, max_batch=16,
                           opt_batch=None, precision="int8", contexts=2, workspace_mib=2048,
                           builder_optimization_level=4)
    line = trtexec_command(request, batch_profile(16, 640), "images", "int8", Path("/c/det.x.engine"),
                           Path("/c/timing.cache"), Path("/c/det.calib"), device_id=1)
    assert line.split() == [
        "trtexec", "--onnx=/m/det.onnx", "--saveEngine=/c/det.x.engine", "--minShapes=images:1x3x640x640",
        "--optShapes=images:8x3x640x640", "--maxShapes=images:16x3x640x640", "--memPoolSize=workspace:2048M",
        "--builderOptimizationLevel=4", "--timingCacheFile=/c/timing.cache", "--device=1", "--skipInference",
        "--fp16", "--int8", "--calib=/c/det.calib"]


def test_trtexec_command_builds_the_candidates_model_when_there_is_one() -> None:
    candidates = CandidateNetwork(Path("/c/det.0123456789abcdef.k1024.candidates.onnx"), "b" * 64, 1024)
    request = BuildRequest(Path("/m/det.onnx"), 640, 80, 16, None, "fp32", 2, 1024, 3, candidates=candidates)
    line = trtexec_command(request, batch_profile(16, 640), "images", "fp32", Path("e"), Path("t"), None)
    assert line.split()[1] == "--onnx=/c/det.0123456789abcdef.k1024.candidates.onnx"


def test_candidates_model_is_named_by_the_source_sha_and_k(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.candidates_model_path("det", "0123456789abcdef" + "f" * 48, 1024)
    assert path == tmp_path / "det.0123456789abcdef.k1024.candidates.onnx"
    assert cache.candidates_model_path("det", "0123456789abcdef" + "f" * 48, 512) != path


def test_trtexec_command_for_fp16_takes_fp16_input() -> None:
    request = BuildRequest(Path("m.onnx"), 320, 2, 4, None, "fp16", 2, 1024, 3)
    line = trtexec_command(request, batch_profile(4, 320), "images", "fp16", Path("e"), Path("t"), None)
    assert line.endswith("--skipInference --fp16 --inputIOFormats=fp16:chw")


def test_trtexec_command_for_fp32_has_no_precision_flags() -> None:
    request = BuildRequest(Path("m.onnx"), 320, 2, 4, None, "fp32", 2, 1024, 3)
    line = trtexec_command(request, batch_profile(4, 320), "images", "fp32", Path("e"), Path("t"), None)
    assert "--fp16" not in line and "--int8" not in line and "--calib" not in line


def test_slow_lock_holder_delays_but_does_not_break_lookup(tmp_path: Path) -> None:
    # a reader never needs the lock: lookups during a build see the old state, then the new one
    cache = EngineCache(tmp_path)
    with cache.build_lock("detector", SPEC):
        started = time.monotonic()
        assert cache.lookup("detector", SPEC).status == "miss"
        assert time.monotonic() - started < 1.0
        cache.store("detector", SPEC, b"PLAN")
    assert cache.lookup("detector", SPEC).status == "hit"
