"""The daemon's main loop, once the stages run: config reload (SIGHUP) with camera restarts,
the systemd status and watchdog (service_status.py), the periodic per-camera status lines, and the
end: every file camera has ended and drained, or `stop` (SIGTERM/SIGINT) was set.

It drives the daemon only through its public wiring (add_camera, remove_cameras, adopt_config,
begin_drain, shutdown) and decides from values the daemon owns (camera handles, stage `done`,
typed counters), never from metrics read back by name.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from pipeline.app.config_diff import diff_configs
from pipeline.app.service_status import ServiceReporter
from pipeline.app.systemd_notify import SystemdNotifier
from pipeline.config import ConfigError
from pipeline.observe.logs import NOT_RATE_LIMITED

if TYPE_CHECKING:
    from pipeline.app.daemon import Daemon

log = logging.getLogger("pipeline.app.supervisor")

TICK_S = 0.1  # how often the loop looks at signals, cameras and the watchdog


class Supervisor:
    def __init__(self, daemon: "Daemon") -> None:
        self._daemon = daemon
        self._options = daemon.options

    def run(self, stop: threading.Event, reload_requested: threading.Event | None = None) -> int:
        """Supervise until `stop` is set or every (file) camera has ended and drained; then shut
        the daemon down. `reload_requested` (set by SIGHUP) makes the loop re-read the config."""
        daemon = self._daemon
        interval = self._options.status_interval_s
        next_lines = time.monotonic() + interval if interval > 0 else float("inf")
        service = ServiceReporter(self._options.notifier or SystemdNotifier(None), daemon.metrics, daemon.board)
        service.ready()  # start() has built every stage and started every thread
        while not stop.wait(TICK_S):
            if reload_requested is not None and reload_requested.is_set():
                reload_requested.clear()
                service.reloading()
                self.reload()
                service.ready()
            service.tick()
            if daemon.drained:
                break
            if not daemon.draining and daemon.cameras.all_ended():
                log.info("every camera has ended; draining")
                daemon.begin_drain()
            if time.monotonic() >= next_lines:
                next_lines += interval
                self._emit_status_lines()
        service.stopping()
        daemon.shutdown()
        return 0

    def reload(self) -> bool:
        """Re-read the config: added cameras start, removed ones stop, changed ones restart,
        the rest keep streaming. An invalid config is rejected and the running one keeps going."""
        daemon = self._daemon
        if self._options.load_config is None:
            log.warning("reload: this daemon has no config file to re-read")
            return False
        if daemon.draining:
            log.warning("reload: ignored while draining")
            return False
        try:
            new = self._options.load_config()
        except ConfigError as exc:
            daemon.metrics.config_reloads.labels("rejected").inc()
            log.error("reload rejected, the running config stays: %s", exc)
            return False
        change = diff_configs(daemon.config, new)
        for section in change.needs_restart:
            log.warning("reload: %s: changes here apply only at start; restart the service to use them",
                        section)
        daemon.remove_cameras(change.removed + tuple(c.id for c in change.changed))
        daemon.apply_rule_changes(change.rules_changed, change.changed + change.added,
                                  change.removed + tuple(c.id for c in change.changed))
        for cam in change.changed + change.added:
            try:
                daemon.add_camera(cam)
            except Exception as exc:  # noqa: BLE001 - one camera must not stop the reload of the others
                log.error("reload: camera %s: cannot start: %s", cam.id, exc)
        daemon.adopt_config(change.applied)
        daemon.metrics.config_reloads.labels("applied").inc()
        log.info("reload applied: %s", change.summary())
        return True

    def _emit_status_lines(self) -> None:
        lines = self._daemon.status_lines()
        if self._options.on_status_lines:
            self._options.on_status_lines(lines)
        else:
            for line in lines:
                log.info("status %s", line, extra=NOT_RATE_LIMITED)
