"""Bind addresses in the config: checked when the config is loaded, so `check` catches a port
out of range instead of `run` failing with a traceback."""
from __future__ import annotations

import re

_HOST = re.compile(r"^(\*|[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])$")  # name, IPv4, [IPv6] or *


def check_port(port: str, where: str, wildcard_ok: bool = False) -> None:
    if wildcard_ok and port == "*":
        return
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{where}: port {port!r} must be 0-65535{' or *' if wildcard_ok else ''}")


def check_host_port(value: str, where: str, wildcard_port_ok: bool = False) -> None:
    """`HOST:PORT` with PORT 0-65535 (and `*` where ZeroMQ allows it); ValueError says which part is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ValueError(f"{where}: expected HOST:PORT")
    if host and not _HOST.match(host):
        raise ValueError(f"{where}: host {host!r} is not a host name or address")
    check_port(port, where, wildcard_port_ok)


def check_zmq_endpoint(value: str) -> None:
    """tcp://HOST:PORT, ipc://PATH or inproc://NAME, with a real port."""
    m = re.match(r"^(tcp|ipc|inproc)://(\S+)$", value)
    if not m:
        raise ValueError(f"bind {value!r} must look like tcp://HOST:PORT or ipc://PATH")
    if m.group(1) == "tcp":
        check_host_port(m.group(2), f"bind {value!r}", wildcard_port_ok=True)
