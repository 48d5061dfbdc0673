"""`pipeline bridge CONFIG`: the bridge's own config file (not a section of the daemon's): where it
subscribes (a daemon or a relay), which brokers it forwards to (`sinks:`), its /metrics and /healthz.
Loaded like the daemon's config: one-line `file.yaml:LINE: dotted.path: message` errors.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from pipeline.config.base import ConfigError, StrictModel
from pipeline.config.loader import compose, expand_env, first_error, line_for, read_config_text

SINK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_BUFFER = 10_000_000


def _check_url(v: str, schemes: tuple[str, ...], default_port: bool = True) -> str:
    """scheme://[user[:password]@]host[:port][/...]; the error never repeats a password."""
    try:
        parts = urlsplit(v)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"url is not a valid URL ({exc})") from None
    if parts.scheme not in schemes:
        raise ValueError(f"url scheme {parts.scheme + '://' if parts.scheme else '(none)'} is not one of "
                         f"{', '.join(s + '://' for s in schemes)}")
    if not parts.hostname:
        raise ValueError(f"url has no host (expected {schemes[0]}://HOST:PORT)")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"url port {port} is outside 1..65535")
    return v


class TlsConfig(StrictModel):
    """TLS to a broker (mqtts:// and rediss:// turn it on with these defaults)."""

    ca_file: Path | None = None  # None: the system's CA certificates
    cert_file: Path | None = None  # client certificate, when the broker asks for one
    key_file: Path | None = None
    insecure: bool = False  # skip certificate and host name checks (never in production)


class BridgeCurveConfig(StrictModel):
    """CURVE towards a daemon (or relay) whose publish socket has publish.curve."""

    server_key_file: Path  # the daemon's public key (.key)
    client_secret_key_file: Path  # the bridge's own secret key (.key_secret); its .key is authorized there


class BridgeSourceConfig(StrictModel):
    url: str = "tcp://127.0.0.1:5555"  # a daemon's publish.bind, or a relay's --bind
    # ZeroMQ topic prefixes to forward; "" is everything the daemon publishes (det/, status/, evt/...)
    topics: tuple[str, ...] = ("",)
    high_water_mark: int = Field(100_000, ge=1, le=MAX_BUFFER)
    curve: BridgeCurveConfig | None = None

    @field_validator("url")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not re.match(r"^(tcp|ipc|inproc)://\S+$", v):
            raise ValueError(f"url {v!r} must look like tcp://HOST:PORT or ipc://PATH")
        return v


class SinkBase(StrictModel):
    name: str  # names the sink in logs, errors, metrics and /healthz
    buffer: int = Field(10_000, ge=1, le=MAX_BUFFER)  # messages held while the broker is away; oldest dropped beyond
    tls: TlsConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SINK_NAME.fullmatch(v):
            raise ValueError(f"sink name {v!r} must match [A-Za-z0-9_-]+")
        return v


class MqttSinkConfig(SinkBase):
    type: Literal["mqtt"]
    url: str  # mqtt://[user[:password]@]host[:1883] or mqtts://host[:8883]
    username: str | None = None  # instead of the URL's; ${secret:NAME} keeps it out of the file
    password: str | None = None
    client_id: str | None = None  # None: pipeline-bridge-<name>
    prefix: str = "pipeline"  # topics <prefix>/<camera>/detections|status|events, <prefix>/available
    qos: int = Field(1, ge=0, le=2)  # 0 can lose messages on a broken connection; 1 and 2 cannot
    retain: tuple[str, ...] = ("status",)  # which kinds the broker keeps for new subscribers
    keepalive_s: int = Field(30, ge=5, le=3600)
    max_inflight: int = Field(1000, ge=1, le=65535)  # messages handed to the broker, not yet acknowledged

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v, ("mqtt", "mqtts"))

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "#+\0") or v.startswith("/") or v.endswith("/"):
            raise ValueError(f"prefix {v!r} must be a non-empty MQTT topic without # + or a leading/trailing /")
        return v


class RedisSinkConfig(SinkBase):
    type: Literal["redis"]
    url: str  # redis://[user:password@]host[:6379][/db] or rediss://
    # "{camera}" in the key: one stream per camera; without it: one stream for all
    stream: str = "pipeline:{camera}"
    maxlen: int | None = Field(100_000, ge=1, le=1_000_000_000)  # XADD MAXLEN ~ (approximate trim); null: no trim
    batch: int = Field(200, ge=1, le=10_000)  # XADDs per round trip (a pipeline)
    timeout_s: float = Field(5.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v, ("redis", "rediss"))

    @field_validator("stream")
    @classmethod
    def _stream(cls, v: str) -> str:
        try:
            v.format(camera="x")
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"stream {v!r}: the only placeholder is {{camera}}") from None
        return v


SinkConfig = Annotated[Union[MqttSinkConfig, RedisSinkConfig], Field(discriminator="type")]


class BridgeMetricsConfig(StrictModel):
    bind: str | None = "127.0.0.1:9109"  # /metrics and /healthz; null turns it off


class BridgeConfig(StrictModel):
    source: BridgeSourceConfig = BridgeSourceConfig()
    sinks: tuple[SinkConfig, ...]
    metrics: BridgeMetricsConfig = BridgeMetricsConfig()
    drain_s: float = Field(5.0, ge=0, le=600)  # at shutdown, time the sinks get to empty their buffers

    @field_validator("sinks")
    @classmethod
    def _some_sink(cls, v: tuple) -> tuple:
        if not v:
            raise ValueError("at least one sink is needed (type: mqtt or redis)")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> "BridgeConfig":
        seen: set[str] = set()
        for sink in self.sinks:
            if sink.name in seen:
                raise ValueError(f"sink name {sink.name!r} is used twice")
            seen.add(sink.name)
        return self


def _resolve_paths(data: Any, base: Path) -> None:
    """Relative key and certificate paths resolve against the config file's folder."""
    if not isinstance(data, dict):
        return
    blocks = []
    source = data.get("source")
    if isinstance(source, dict) and isinstance(source.get("curve"), dict):
        blocks.append(source["curve"])
    for sink in data.get("sinks") or []:
        if isinstance(sink, dict) and isinstance(sink.get("tls"), dict):
            blocks.append(sink["tls"])
    for block in blocks:
        for key, value in block.items():
            if key.endswith("_file") and isinstance(value, str):
                block[key] = str(base / value)


def _without_sink_tags(exc: ValidationError) -> ValidationError:
    """pydantic puts the union's tag into the path (sinks.0.mqtt.url); the file has no such key."""
    errors = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        if len(loc) > 2 and loc[0] == "sinks" and loc[2] in ("mqtt", "redis"):
            loc = loc[:2] + loc[3:]
        errors.append({**err, "loc": loc})
    return ValidationError.from_exception_data(exc.title, [
        {"type": "value_error" if e["type"] == "value_error" else e["type"], "loc": e["loc"], "input": e.get("input"),
         "ctx": e.get("ctx") or {}} for e in errors])


def parse_bridge_config(text: str, source: str = "<bridge config>", base: Path | None = None,
                        env: dict[str, str] | None = None) -> BridgeConfig:
    data, lines = compose(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: (top level): expected a mapping with source: and sinks:")
    data = expand_env(data, (), lines, source, dict(os.environ) if env is None else env)
    for i, sink in enumerate(data.get("sinks") or [] if isinstance(data.get("sinks"), list) else []):
        if isinstance(sink, dict) and sink.get("type") == "kafka":  # designed, not built: docs/scale-out.md
            raise ConfigError(f"{source}:{line_for(('sinks', i, 'type'), lines)}: sinks[{i}].type: kafka is not "
                              f"offered yet (see docs/scale-out.md); use mqtt or redis")
    _resolve_paths(data, base or Path.cwd())
    try:
        cfg = BridgeConfig.model_validate(data)
    except ValidationError as exc:
        raise first_error(_without_sink_tags(exc), source, lines) from None
    _check_files(cfg, source, lines)
    return cfg


def _check_files(cfg: BridgeConfig, source: str, lines: dict) -> None:
    where_files: list[tuple[tuple, Path | None]] = []
    if cfg.source.curve is not None:
        where_files += [(("source", "curve", k), getattr(cfg.source.curve, k))
                        for k in ("server_key_file", "client_secret_key_file")]
    for i, sink in enumerate(cfg.sinks):
        if sink.tls is not None:
            where_files += [(("sinks", i, "tls", k), getattr(sink.tls, k)) for k in ("ca_file", "cert_file", "key_file")]
    for loc, path in where_files:
        if path is not None and not path.is_file():
            dotted = ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc).replace(".[", "[")
            raise ConfigError(f"{source}:{line_for(loc, lines)}: {dotted}: no such file {path}")


def load_bridge_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> BridgeConfig:
    path = Path(path)
    text = read_config_text(path)
    return parse_bridge_config(text, source=str(path), base=path.resolve().parent, env=env)
