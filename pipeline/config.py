"""Typed configuration: pydantic models (extra="forbid") loaded from YAML.

Every error becomes one line `file.yaml:LINE: dotted.path: message` (ConfigError).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

CAMERA_ID = re.compile(r"^[A-Za-z0-9_-]+$")
# ${NAME}: environment variable; ${secret:NAME}: the file $CREDENTIALS_DIRECTORY/NAME (systemd LoadCredential=)
ENV_REF = re.compile(r"\$\{(?:secret:(?P<secret>[^}]*)|(?P<env>[A-Za-z_][A-Za-z0-9_]*))\}")
SECRET_NAME = re.compile(r"^[A-Za-z0-9_.@-]+$")
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://", "srt://")


class ConfigError(Exception):
    """A config problem, already formatted as one line naming file, line and path."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraConfig(_Model):
    id: str
    url: str
    # validate_default: "auto" is resolved from the url even when the key is absent
    type: Literal["auto", "file", "network", "synthetic"] = Field("auto", validate_default=True)
    loop: bool = False
    realtime: bool = True
    # network sources: seconds without a packet before the connection counts as dead
    timeout_s: float = Field(5.0, gt=0, le=300)

    @field_validator("id")
    @classmethod
    def _id_charset(cls, v: str) -> str:
        if not CAMERA_ID.fullmatch(v):
            raise ValueError(f"camera id {v!r} must match [A-Za-z0-9_-]+")
        return v

    @field_validator("type")
    @classmethod
    def _resolve_type(cls, v: str, info: ValidationInfo) -> str:
        url = info.data.get("url", "")
        if v != "auto":
            return v
        if url.startswith("synthetic:"):
            return "synthetic"
        if url.lower().startswith(NETWORK_SCHEMES):
            return "network"
        return "file"

    @field_validator("loop")
    @classmethod
    def _loop_for_files(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("type") not in (None, "file"):
            raise ValueError("loop: applies to files only")
        return v

    @property
    def is_live(self) -> bool:
        """Live sources never wait on the pipeline: they drop the oldest frame instead."""
        return self.type == "network" or self.realtime


class CalibrationConfig(_Model):
    """INT8 calibration input for backend tensorrt: letterboxed frames drawn from these sources."""

    sources: list[str] = []  # camera ids from cameras:, video files (relative to the config) or URLs
    frames: int = Field(500, ge=1, le=100000)
    batch_size: int = Field(8, ge=1, le=1024)
    cache_file: Path | None = None  # None: beside the engines in model.engine_cache_dir


class TensorRtConfig(_Model):
    """Engine build and execution settings of backend tensorrt (see docs/tensorrt.md)."""

    opt_batch: int | None = Field(None, ge=1)  # None: scheduler.max_batch // 2 (at least 1)
    contexts: int = Field(2, ge=1, le=8)  # execution contexts in flight, one profile each
    workspace_mib: int = Field(1024, ge=16, le=1 << 20)
    builder_optimization_level: int = Field(3, ge=0, le=5)


class OnnxRuntimeConfig(_Model):
    """CUDA EP settings of backend onnxruntime (docs/BENCHMARKS.md measures each on the H200)."""

    cuda_graph: bool = True  # replay each batch size as a captured CUDA graph (pipeline/infer/ort_gpu.py)
    prefer_nhwc: bool = True  # the CUDA EP's NHWC convolution kernels
    priority_stream: bool = True  # run inference on a highest-priority CUDA stream (ort_gpu.PriorityStream)


class ModelConfig(_Model):
    path: Path
    backend: str = "onnxruntime"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    labels: list[str]
    input_size: int = Field(640, ge=32, le=4096)
    score_threshold: float = Field(0.35, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.5, ge=0.0, le=1.0)
    max_detections: int = Field(300, ge=1, le=10000)
    # Copies of the model, each run by its own inference thread: with 2, one batch's host-side work
    # (copy in, hand-over, Python) overlaps the other's GPU time. Each copy has its own GPU memory.
    instances: int = Field(1, ge=1, le=8)
    # Best anchors per image selected on the device (pipeline/infer/candidates.py); null copies the
    # whole [B, 4+C, N] output to the host and decodes it there.
    max_candidates: int | None = Field(1024, ge=1, le=3840)  # 3840: TensorRT's TopK limit
    # backend tensorrt only; None: $STATE_DIRECTORY/engines, else ~/.cache/pipeline/engines
    engine_cache_dir: Path | None = None
    calibration: CalibrationConfig | None = None
    tensorrt: TensorRtConfig = TensorRtConfig()
    onnxruntime: OnnxRuntimeConfig = OnnxRuntimeConfig()  # device gpu only

    @field_validator("input_size")
    @classmethod
    def _stride(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"input_size {v} must be a multiple of 32")
        return v

    @field_validator("labels")
    @classmethod
    def _labels_nonempty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("labels must name at least one class")
        return v


class DecodeConfig(_Model):
    device: Literal["cpu", "gpu"] = "cpu"
    gpu_id: int = Field(0, ge=0)
    # Processes that run the cameras (decode included), so decoding does not share the daemon's
    # GIL; 0: camera threads in the daemon process (pipeline/workers/).
    workers: int = Field(0, ge=0, le=64)


class PreprocessConfig(_Model):
    device: Literal["cpu", "gpu"] = "cpu"
    num_threads: int = Field(2, ge=1, le=64)


class SchedulerConfig(_Model):
    max_batch: int = Field(16, ge=1, le=1024)
    max_wait_ms: float = Field(20, ge=0, le=10000)
    queue_per_camera: int = Field(4, ge=1, le=1000)


class CurveConfig(_Model):
    """ZeroMQ CURVE on the publish socket: encryption, and only listed subscribers get in."""

    server_secret_key_file: Path  # a zmq.auth secret certificate (`pipeline curve-keys` makes one)
    authorized_clients_dir: Path  # the clients' public certificates (*.key); re-read on reload


class PublishConfig(_Model):
    bind: str = "tcp://127.0.0.1:5555"
    high_water_mark: int = Field(10000, ge=1)
    linger_ms: int = Field(1000, ge=0)
    curve: CurveConfig | None = None

    @field_validator("bind")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not re.match(r"^(tcp|ipc|inproc)://\S+$", v):
            raise ValueError(f"bind {v!r} must look like tcp://HOST:PORT or ipc://PATH")
        return v


class MetricsConfig(_Model):
    bind: str | None = "127.0.0.1:9108"  # null turns the HTTP endpoint off


class PipelineConfig(_Model):
    cameras: list[CameraConfig]
    model: ModelConfig
    decode: DecodeConfig = DecodeConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    publish: PublishConfig = PublishConfig()
    metrics: MetricsConfig = MetricsConfig()

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, v: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for cam in v:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} is used twice")
            seen.add(cam.id)
        if not v:
            raise ValueError("at least one camera is needed")
        return v


# ---------------------------------------------------------------- YAML with line numbers

Loc = tuple[Any, ...]


# More values than any real config has: stops alias bombs ("billion laughs") from expanding.
MAX_YAML_VALUES = 100_000


def _compose(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML into plain data plus a map from each path to its 1-based line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{line}: YAML syntax: {problem}") from None
    except RecursionError:  # PyYAML's parser recurses once per nesting level
        raise ConfigError(f"{source}:1: YAML syntax: nested too deeply") from None
    lines: dict[Loc, int] = {}
    open_nodes: set[int] = set()  # ids of the collections being built: an alias to one is a cycle
    built = 0

    def build(n: yaml.Node, loc: Loc) -> Any:
        nonlocal built
        line = n.start_mark.line + 1
        lines[loc] = line
        built += 1
        if built > MAX_YAML_VALUES:
            raise ConfigError(f"{source}:{line}: {_dotted(loc)}: more than {MAX_YAML_VALUES} values "
                              f"(aliases expanding without end?)")
        if isinstance(n, (yaml.MappingNode, yaml.SequenceNode)):
            if id(n) in open_nodes:
                raise ConfigError(f"{source}:{line}: {_dotted(loc)}: a YAML alias refers to itself")
            open_nodes.add(id(n))
            try:
                if isinstance(n, yaml.SequenceNode):
                    return [build(item, loc + (i,)) for i, item in enumerate(n.value)]
                out: dict[Any, Any] = {}
                for key_node, value_node in n.value:
                    if not isinstance(key_node, yaml.ScalarNode):
                        raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: {_dotted(loc)}: "
                                          f"a key must be a plain name, not a YAML {key_node.id}")
                    key = key_node.value
                    out[key] = build(value_node, loc + (key,))
                    lines[loc + (key,)] = key_node.start_mark.line + 1
                return out
            finally:
                open_nodes.discard(id(n))
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(n)
        except yaml.YAMLError as exc:  # e.g. an unknown !tag
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{source}:{line}: {_dotted(loc)}: {problem}") from None
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. !!int abc, !!timestamp 2024-13-45
            raise ConfigError(f"{source}:{line}: {_dotted(loc)}: cannot read {n.tag.rsplit(':', 1)[-1]} "
                              f"value: {' '.join(str(exc).split())}") from None
        except AttributeError:  # PyYAML's own slip on a tagged scalar it cannot parse, e.g. !!timestamp 2024-13-45x
            raise ConfigError(f"{source}:{line}: {_dotted(loc)}: {str(n.value)[:60]!r} is not a valid "
                              f"{n.tag.rsplit(':', 1)[-1]}") from None
        finally:
            loader.dispose()

    if node is None:
        return None, {(): 1}
    try:
        return build(node, ()), lines
    except RecursionError:
        raise ConfigError(f"{source}:1: YAML: nested too deeply") from None


def _expand_env(data: Any, loc: Loc, lines: dict[Loc, int], source: str, env: dict[str, str]) -> Any:
    if isinstance(data, dict):
        return {k: _expand_env(v, loc + (k,), lines, source, env) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand_env(v, loc + (i,), lines, source, env) for i, v in enumerate(data)]
    if isinstance(data, str):
        def sub(m: re.Match[str]) -> str:
            where = f"{source}:{_line_for(loc, lines)}: {_dotted(loc)}"
            if m.group("secret") is not None:
                return _read_secret(m.group("secret"), env, where)
            name = m.group("env")
            if name not in env:
                raise ConfigError(f"{where}: environment variable ${{{name}}} is not set")
            return env[name]
        return ENV_REF.sub(sub, data)
    return data


def _read_secret(name: str, env: dict[str, str], where: str) -> str:
    """The credential file's text without its trailing newline; errors name the credential, never its value."""
    if not SECRET_NAME.match(name):
        raise ConfigError(f"{where}: ${{secret:{name}}}: a credential name is letters, digits and _.@-")
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(f"{where}: ${{secret:{name}}} needs $CREDENTIALS_DIRECTORY "
                          f"(systemd sets it for LoadCredential=)")
    path = Path(directory) / name
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise ConfigError(f"{where}: ${{secret:{name}}}: no credential {name!r} in {directory} "
                          f"(add LoadCredential={name}:/path/to/file to the unit)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: ${{secret:{name}}}: credential {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{where}: ${{secret:{name}}}: cannot read {path}: {exc.strerror}") from None


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int:
    loc = tuple(loc)
    while loc not in lines and loc:
        loc = loc[:-1]
    return lines.get(loc, 1)


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = str(part)
            out += ("." if out else "") + (name if name.isprintable() else repr(name))  # keeps it one line
    return out or "(top level)"


def _first_error(exc: ValidationError, source: str, lines: dict[Loc, int]) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    elif err["type"] == "missing":
        msg = f"required key {loc[-1]!r} is missing"
        line = _line_for(loc[:-1], lines)
        return ConfigError(f"{source}:{line}: {_dotted(loc)}: {msg}")
    msg = msg.removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    return ConfigError(f"{source}:{_line_for(loc, lines)}: {_dotted(loc)}: {msg}")


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative file paths resolve against the config file's folder."""
    model = data.get("model")
    if isinstance(model, dict):
        if isinstance(model.get("path"), str):
            model["path"] = str((base / model["path"]))
        labels = model.get("labels")
        if isinstance(labels, str):
            model["labels"] = str(base / labels)
        if isinstance(model.get("engine_cache_dir"), str):
            model["engine_cache_dir"] = str(base / model["engine_cache_dir"])
        _resolve_calibration_paths(model.get("calibration"), data.get("cameras"), base)
    curve = data.get("publish", {}).get("curve") if isinstance(data.get("publish"), dict) else None
    if isinstance(curve, dict):
        for key in ("server_secret_key_file", "authorized_clients_dir"):
            if isinstance(curve.get(key), str):
                curve[key] = str(base / curve[key])
    cams = data.get("cameras")
    if isinstance(cams, list):
        for cam in cams:
            if isinstance(cam, dict) and isinstance(cam.get("url"), str):
                url = cam["url"]
                if "://" not in url and not url.startswith("synthetic:"):
                    cam["url"] = str(base / url)
    return data


def _resolve_calibration_paths(calibration: Any, cameras: Any, base: Path) -> None:
    """A calibration source naming a camera id becomes that camera's URL; other sources that are
    not URLs are files relative to the config."""
    if not isinstance(calibration, dict):
        return
    if isinstance(calibration.get("cache_file"), str):
        calibration["cache_file"] = str(base / calibration["cache_file"])
    sources = calibration.get("sources")
    if not isinstance(sources, list):
        return
    camera_urls = {c["id"]: c["url"] for c in (cameras if isinstance(cameras, list) else [])
                   if isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("url"), str)}

    def resolve(s: Any) -> Any:
        if not isinstance(s, str):
            return s
        s = camera_urls.get(s, s)
        return s if "://" in s or s.startswith("synthetic:") else str(base / s)

    calibration["sources"] = [resolve(s) for s in sources]


def _check_unique_ids(data: dict[str, Any], source: str, lines: dict[Loc, int]) -> None:
    """Point at the second use of an id (pydantic would only point at the list)."""
    cams = data.get("cameras")
    if not isinstance(cams, list):
        return
    seen: set[str] = set()
    for i, cam in enumerate(cams):
        cam_id = cam.get("id") if isinstance(cam, dict) else None
        if isinstance(cam_id, str) and cam_id in seen:
            raise ConfigError(f"{source}:{_line_for(('cameras', i, 'id'), lines)}: cameras[{i}].id: "
                              f"camera id {cam_id!r} is used twice")
        if isinstance(cam_id, str):
            seen.add(cam_id)


def _read_labels(data: dict[str, Any], source: str, lines: dict[Loc, int]) -> None:
    model = data.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("labels"), str):
        return
    path = Path(model["labels"])
    line = _line_for(("model", "labels"), lines)
    try:
        model["labels"] = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as exc:
        raise ConfigError(f"{source}:{line}: model.labels: cannot read {path}: {exc.strerror}") from None


def parse_config(text: str, source: str = "<config>", base: Path | None = None,
                 env: dict[str, str] | None = None, check_files: bool = True) -> PipelineConfig:
    """Validate YAML text; raise ConfigError with a one-line message on any problem."""
    data, lines = _compose(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: (top level): expected a mapping with cameras: and model:")
    data = _expand_env(data, (), lines, source, dict(os.environ) if env is None else env)
    _check_unique_ids(data, source, lines)
    base = base or Path.cwd()
    data = _resolve_paths(data, base)
    _read_labels(data, source, lines)
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, source, lines) from None
    if check_files:
        _check_files(cfg, source, lines)
    return cfg


def _check_files(cfg: PipelineConfig, source: str, lines: dict[Loc, int]) -> None:
    if not cfg.model.path.is_file():
        raise ConfigError(f"{source}:{_line_for(('model', 'path'), lines)}: model.path: "
                          f"no such file {cfg.model.path}")
    curve = cfg.publish.curve
    if curve is not None:
        where = ("publish", "curve")
        if not curve.server_secret_key_file.is_file():
            raise ConfigError(f"{source}:{_line_for(where + ('server_secret_key_file',), lines)}: "
                              f"publish.curve.server_secret_key_file: no such file {curve.server_secret_key_file}")
        if not curve.authorized_clients_dir.is_dir():
            raise ConfigError(f"{source}:{_line_for(where + ('authorized_clients_dir',), lines)}: "
                              f"publish.curve.authorized_clients_dir: no such directory "
                              f"{curve.authorized_clients_dir}")
    for i, cam in enumerate(cfg.cameras):
        if cam.type == "file" and not Path(cam.url).exists():
            raise ConfigError(f"{source}:{_line_for(('cameras', i, 'url'), lines)}: "
                              f"cameras[{i}].url: no such file {cam.url}")


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None,
                check_files: bool = True) -> PipelineConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}:1: config is not UTF-8 text") from None
    return parse_config(text, source=str(path), base=path.resolve().parent, env=env,
                        check_files=check_files)
