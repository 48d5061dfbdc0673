"""Redis Streams sink (redis-py): one XADD per message, `stream` naming the key ("{camera}" in it:
one stream per camera), fields `topic` (the ZeroMQ topic) and `message` (the daemon's JSON
unchanged), `MAXLEN ~ maxlen` trimming. Messages go in pipelines of up to `batch` XADDs per round
trip; a pipeline that fails on a broken connection is sent again whole (at least once: Redis may
then hold a message twice, under two entry ids; (camera, seq) tells them apart).
"""
from __future__ import annotations

import logging
import socket
import ssl
from typing import Callable
from urllib.parse import urlsplit

import redis

from pipeline.bridge.buffer import BridgeMessage
from pipeline.bridge.sinks import Sink, SinkDisconnected, SinkError, register_sink
from pipeline.config.bridge import RedisSinkConfig

log = logging.getLogger("pipeline.bridge")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _in_chain(exc: BaseException, test: Callable[[BaseException], bool]) -> bool:
    """Whether `exc` or an exception it was raised from (its cause, else its context) passes `test`."""
    seen: BaseException | None = exc
    while seen is not None:
        if test(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_unknown_host(exc: BaseException) -> bool:
    return _in_chain(exc, lambda e: isinstance(e, socket.gaierror) or "Name or service not known" in str(e))


def _is_tls_error(exc: BaseException) -> bool:
    return _in_chain(exc, lambda e: isinstance(e, ssl.SSLError) or "SSL" in str(e))


@register_sink
class RedisStreamsSink(Sink):
    type_key = "redis"

    def __init__(self, config: RedisSinkConfig, on_delivered: Callable[[int], None]) -> None:
        super().__init__(config, on_delivered)
        self.cfg = config
        self._client: redis.Redis | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    def _new_client(self) -> redis.Redis:
        cfg = self.cfg
        url = cfg.url
        kwargs: dict = {"socket_connect_timeout": cfg.timeout_s, "socket_timeout": cfg.timeout_s}
        if cfg.tls is not None or urlsplit(url).scheme == "rediss":
            url = "rediss://" + url.split("://", 1)[1]
            tls = cfg.tls
            kwargs.update(ssl_cert_reqs="none" if tls and tls.insecure else "required",
                          ssl_check_hostname=not (tls and tls.insecure))
            if tls and tls.ca_file:
                kwargs["ssl_ca_certs"] = str(tls.ca_file)
            if tls and tls.cert_file:
                kwargs["ssl_certfile"] = str(tls.cert_file)
            if tls and tls.key_file:
                kwargs["ssl_keyfile"] = str(tls.key_file)
        return redis.Redis.from_url(url, **kwargs)

    def connect(self) -> None:
        self._drop_client()
        client = self._new_client()
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            client.close()
            raise SinkError(f"{self.label}: authentication failed: {_one_line(exc)}", fatal=True) from None
        except redis.ResponseError as exc:  # e.g. NOAUTH: the server wants a password the URL lacks
            client.close()
            raise SinkError(f"{self.label}: refused: {_one_line(exc)}", fatal=True) from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            client.close()
            if _is_tls_error(exc):
                raise SinkError(f"{self.label}: TLS: {_one_line(exc)}", fatal=True) from None
            if _is_unknown_host(exc):
                raise SinkError(f"{self.label}: cannot resolve host: {_one_line(exc)}", fatal=True) from None
            raise SinkError(f"{self.label}: cannot connect: {_one_line(exc)}") from None
        self._client = client
        self._connected = True

    def send(self, msgs: list[BridgeMessage]) -> int:
        cfg = self.cfg
        pipe = self._client.pipeline(transaction=False)
        for msg in msgs:
            pipe.xadd(cfg.stream.format(camera=msg.camera), {"topic": msg.topic, "message": msg.payload},
                      maxlen=cfg.maxlen, approximate=cfg.maxlen is not None)
        try:
            results = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self._drop_client()
            raise SinkDisconnected(f"{self.label}: connection lost: {_one_line(exc)}", msgs) from None
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:  # e.g. WRONGTYPE: the key holds something else; sending again would fail again
            log.error("%s: %d message(s) rejected: %s", self.label, len(errors), _one_line(errors[0]))
        self.on_delivered(len(results) - len(errors))
        return len(errors)

    def close(self) -> None:
        self._drop_client()

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except (redis.RedisError, OSError):
                pass
            self._client = None
        self._connected = False
