"""The bridge's Prometheus metrics (its own registry: it is its own process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("pipeline_bridge_received_total", "messages received from the daemon", registry=r)
        self.skipped = Counter("pipeline_bridge_skipped_total",
                               "messages whose topic is not kind/camera/ (not forwarded)", registry=r)
        self.delivered = Counter("pipeline_bridge_delivered_total", "messages the broker confirmed", ["sink"],
                                 registry=r)
        self.dropped = Counter("pipeline_bridge_dropped_total",
                               "messages dropped: buffer full (oldest first), rejected by the broker, or left at exit",
                               ["sink"], registry=r)
        self.requeued = Counter("pipeline_bridge_requeued_total",
                                "messages sent again after a broken connection (the broker may hold them twice)",
                                ["sink"], registry=r)
        self.reconnects = Counter("pipeline_bridge_reconnects_total", "connections made again after a loss",
                                  ["sink"], registry=r)
        self.connected = Gauge("pipeline_bridge_connected", "1 while the sink is connected to its broker", ["sink"],
                               registry=r)
        self.buffered = Gauge("pipeline_bridge_buffered", "messages waiting for the broker", ["sink"], registry=r)
