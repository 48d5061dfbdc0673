"""Loading a config file: YAML with line numbers, ${VAR} and ${secret:NAME} expansion, relative
paths, and every error as one line `file.yaml:LINE: dotted.path: message` (ConfigError).
"""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config.base import ConfigError
from pipeline.config.pipeline import PipelineConfig

# ${NAME}: environment variable; ${secret:NAME}: the file $CREDENTIALS_DIRECTORY/NAME (systemd LoadCredential=)
ENV_REF = re.compile(r"\$\{(?:secret:(?P<secret>[^}]*)|(?P<env>[A-Za-z_][A-Za-z0-9_]*))\}")
SECRET_NAME = re.compile(r"^[A-Za-z0-9_.@-]+$")

# ---------------------------------------------------------------- YAML with line numbers

Loc = tuple[Any, ...]


# More values than any real config has: stops alias bombs ("billion laughs") from expanding.
MAX_YAML_VALUES = 100_000


def compose(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
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


def expand_env(data: Any, loc: Loc, lines: dict[Loc, int], source: str, env: dict[str, str]) -> Any:
    if isinstance(data, dict):
        return {k: expand_env(v, loc + (k,), lines, source, env) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, loc + (i,), lines, source, env) for i, v in enumerate(data)]
    if isinstance(data, str):
        def sub(m: re.Match[str]) -> str:
            where = f"{source}:{line_for(loc, lines)}: {_dotted(loc)}"
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


def line_for(loc: Loc, lines: dict[Loc, int]) -> int:
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
            # repr for a key that would not read as one: unprintable (keeps it one line), empty or
            # blank at either end (a YAML key ' ' printed bare left "file:35:  : ...")
            plain = name.isprintable() and name and name == name.strip()
            out += ("." if out else "") + (name if plain else repr(name))
    return out or "(top level)"


def _short_repr(value: Any) -> str:
    text = repr(value)  # one line: repr escapes newlines
    return text if len(text) <= 60 else text[:57] + "..."


# pydantic's own parts of an error location: validator names, union members ("list[constrained-int]")
_PYDANTIC_LOC_PART = re.compile(r"^(function-.*|[A-Za-z_][\w-]*\[[\w\-\[\],'\"]*\])$")


def first_error(exc: ValidationError, source: str, lines: dict[Loc, int]) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    # drop pydantic's own parts (validator names, union members such as "list[constrained-int]")
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _PYDANTIC_LOC_PART.match(p)))
    if not loc:  # a key of the user's that only looks like one of pydantic's parts
        loc = tuple(err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    elif err["type"] == "missing":
        msg = f"required key {loc[-1]!r} is missing"
        line = line_for(loc[:-1], lines)
        return ConfigError(f"{source}:{line}: {_dotted(loc)}: {msg}")
    elif err["type"] == "literal_error":  # e.g. model.backend, cameras[].type: name the valid values
        msg = f"{_short_repr(err['input'])} is not valid; expected {err['ctx']['expected']}"
    msg = msg.removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    return ConfigError(f"{source}:{line_for(loc, lines)}: {_dotted(loc)}: {msg}")


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
    preview = data.get("preview")
    snapshots = preview.get("snapshots") if isinstance(preview, dict) else None
    if isinstance(snapshots, dict) and isinstance(snapshots.get("dir"), str):
        snapshots["dir"] = str(base / snapshots["dir"])
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
            raise ConfigError(f"{source}:{line_for(('cameras', i, 'id'), lines)}: cameras[{i}].id: "
                              f"camera id {cam_id!r} is used twice")
        if isinstance(cam_id, str):
            seen.add(cam_id)


def _read_labels(data: dict[str, Any], source: str, lines: dict[Loc, int]) -> None:
    model = data.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("labels"), str):
        return
    path = Path(model["labels"])
    line = line_for(("model", "labels"), lines)
    try:
        model["labels"] = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as exc:
        raise ConfigError(f"{source}:{line}: model.labels: cannot read {path}: {exc.strerror}") from None


def parse_config(text: str, source: str = "<config>", base: Path | None = None,
                 env: dict[str, str] | None = None, check_files: bool = True) -> PipelineConfig:
    """Validate YAML text; raise ConfigError with a one-line message on any problem."""
    data, lines = compose(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: (top level): expected a mapping with cameras: and model:")
    data = expand_env(data, (), lines, source, dict(os.environ) if env is None else env)
    _check_unique_ids(data, source, lines)
    base = base or Path.cwd()
    data = _resolve_paths(data, base)
    _read_labels(data, source, lines)
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc, source, lines) from None
    _check_gpu_pins(cfg, source, lines)
    _check_analytics(cfg, source, lines)
    if check_files:
        _check_files(cfg, source, lines)
    return cfg


def _check_gpu_pins(cfg: PipelineConfig, source: str, lines: dict[Loc, int]) -> None:
    """camera.gpu must be one of the config's GPUs (with gpus: all, only the machine knows)."""
    if cfg.gpus == "all":
        return
    gpus = cfg.gpu_ids(visible=0)
    for i, cam in enumerate(cfg.cameras):
        if cam.gpu is not None and cam.gpu not in gpus:
            named = "gpus" if cfg.gpus is not None else "decode.gpu_id (set gpus: for several)"
            raise ConfigError(f"{source}:{line_for(('cameras', i, 'gpu'), lines)}: cameras[{i}].gpu: "
                              f"GPU {cam.gpu} is not one of {named} {list(gpus)}")


def _check_analytics(cfg: PipelineConfig, source: str, lines: dict[Loc, int]) -> None:
    """Zones and lines need tracking on, and their class filters must name model labels."""
    labels = set(cfg.model.labels)
    for i, cam in enumerate(cfg.cameras):
        rules = [("zones", j, r) for j, r in enumerate(cam.analytics.zones)]
        rules += [("lines", j, r) for j, r in enumerate(cam.analytics.lines)]
        if rules and not cfg.analytics.tracking:
            loc = ("cameras", i, "analytics")
            raise ConfigError(f"{source}:{line_for(loc, lines)}: {_dotted(loc)}: zones and lines need "
                              f"analytics.tracking: true")
        names: set[str] = set()
        for kind, j, rule in rules:
            where = ("cameras", i, "analytics", kind, j)
            if rule.name in names:
                loc = where + ("name",)
                raise ConfigError(f"{source}:{line_for(loc, lines)}: {_dotted(loc)}: name {rule.name!r} "
                                  f"is used twice in this camera's zones and lines")
            names.add(rule.name)
            points = ([(("points", k), p) for k, p in enumerate(rule.points)] if kind == "zones"
                      else [(("start",), rule.start), (("end",), rule.end)])
            for key, (x, y) in points:
                problem = cam.analytics.outside(x, y)
                if problem:
                    loc = where + key
                    raise ConfigError(f"{source}:{line_for(loc, lines)}: {_dotted(loc)}: {problem}")
            for k, label in enumerate(rule.classes or ()):
                if labels and label not in labels:  # no labels: the model names its classes (checked at start)
                    loc = ("cameras", i, "analytics", kind, j, "classes", k)
                    raise ConfigError(f"{source}:{line_for(loc, lines)}: {_dotted(loc)}: unknown class "
                                      f"{label!r} (model.labels: {', '.join(cfg.model.labels)})")


def _unreadable_file(path: Path) -> str | None:
    """Why `path` cannot be read as a regular file, in words (None when it can): a symlink loop, a
    directory and a permission problem each say so instead of "no such file"."""
    try:
        if path.is_dir():
            return f"{path} is a directory, not a file"
        # O_NONBLOCK: a FIFO without a writer (or a device) must not hang `check`
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path}: symbolic link loop"
        if exc.errno == errno.ENOENT:
            return f"no such file {path}"
        return f"cannot read {path}: {exc.strerror}"


def _check_files(cfg: PipelineConfig, source: str, lines: dict[Loc, int]) -> None:
    if (problem := _unreadable_file(cfg.model.path)) is not None:
        raise ConfigError(f"{source}:{line_for(('model', 'path'), lines)}: model.path: {problem}")
    curve = cfg.publish.curve
    if curve is not None:
        where = ("publish", "curve")
        if not curve.server_secret_key_file.is_file():
            raise ConfigError(f"{source}:{line_for(where + ('server_secret_key_file',), lines)}: "
                              f"publish.curve.server_secret_key_file: no such file {curve.server_secret_key_file}")
        if not curve.authorized_clients_dir.is_dir():
            raise ConfigError(f"{source}:{line_for(where + ('authorized_clients_dir',), lines)}: "
                              f"publish.curve.authorized_clients_dir: no such directory "
                              f"{curve.authorized_clients_dir}")
    for i, cam in enumerate(cfg.cameras):
        if cam.type == "file" and (problem := _unreadable_file(Path(cam.url))) is not None:
            raise ConfigError(f"{source}:{line_for(('cameras', i, 'url'), lines)}: cameras[{i}].url: {problem}")


def read_config_text(path: Path) -> str:
    """The text of a config file, or a ConfigError naming the file (the daemon's and the bridge's)."""
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}:1: config is not UTF-8 text") from None


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None,
                check_files: bool = True) -> PipelineConfig:
    path = Path(path)
    text = read_config_text(path)
    return parse_config(text, source=str(path), base=path.resolve().parent, env=env,
                        check_files=check_files)
