"""File descriptors a config needs, against the process's RLIMIT_NOFILE.

Each camera holds a few fds (its input, FFmpeg's sockets, decode worker pipes); the metrics server
holds up to its connection limit; every subscriber is one more (up to publish.max_subscribers). systemd's default soft limit is
1024, which ~1000 idle connections can use up (issue 23): `run` raises the soft limit to what the
config needs (never above the hard limit) and `check` warns when even the hard limit is short.
"""
from __future__ import annotations

import resource

from pipeline.config import PipelineConfig
from pipeline.observe.http import MAX_CONNECTIONS

BASE_FDS = 256  # the interpreter, libraries, the model, logging, ZeroMQ's own sockets
FDS_PER_CAMERA = 16  # an input, a reconnect in flight, worker pipes, with room to spare


def fds_needed(cfg: PipelineConfig) -> int:
    return BASE_FDS + FDS_PER_CAMERA * len(cfg.cameras) + MAX_CONNECTIONS + cfg.publish.max_subscribers


def fd_limit_warning(cfg: PipelineConfig, limits: tuple[int, int] | None = None) -> str | None:
    """A one-line warning when the hard open-files limit is below what `cfg` needs, else None."""
    soft, hard = limits or resource.getrlimit(resource.RLIMIT_NOFILE)
    need = fds_needed(cfg)
    usable = hard if hard != resource.RLIM_INFINITY else need
    if usable >= need:
        return None
    return (f"open-files limit {usable} (hard; soft {soft}) is below the ~{need} that "
            f"{len(cfg.cameras)} camera(s) need: raise LimitNOFILE= in the unit (or ulimit -n)")


def raise_fd_limit(cfg: PipelineConfig) -> tuple[int, int]:
    """Raise the soft limit towards what `cfg` needs, up to the hard limit; (old soft, new soft)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = fds_needed(cfg) if hard == resource.RLIM_INFINITY else min(hard, fds_needed(cfg))
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return soft, want
    return soft, soft
