"""Prometheus metrics of one replica (prometheus-client), served on the health address.

Hot paths keep plain counters (the store's StoreStats, the hub's counts); a collector turns
them into metrics when /metrics is scraped, so a send costs no extra locking. Histograms
(commit latency, NOTIFY lag) are observed where the time is measured."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per server (several servers may share a process in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.commit_seconds = Histogram(
            "agentnet_store_commit_seconds",
            "Duration of one store write transaction (a group commit of one or more operations)",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.notify_lag_seconds = Histogram(
            "agentnet_notify_lag_seconds",
            "Time from another replica's commit to this replica hearing of it (LISTEN/NOTIFY)",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )

    def watch(self, app: Any) -> None:
        """Read the app's live counters at each scrape."""
        self.registry.register(_AppCollector(app))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _AppCollector(Collector):
    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        app = self.app
        hub, db, readiness = app.hub, app.db, app.readiness
        yield _gauge("agentnet_sessions", "Live Session streams on this replica", sum(1 for _ in hub.sessions()))
        yield _counter(
            "agentnet_sends",
            "Messages committed by this replica (duplicates included)",
            db.stats.writes["send_message"],
        )
        yield _counter(
            "agentnet_deliveries", "Sequenced events handed to live sessions' queues", getattr(hub, "delivered", 0)
        )
        yield _gauge("agentnet_writer_queue_depth", "Writes waiting for the store's writer thread", db.queue_depth())
        errors = CounterMetricFamily(
            "agentnet_store_errors", "Store failures by kind (connection_lost, lock_timeout, ...)", labels=["kind"]
        )
        for kind, n in sorted(db.stats.errors.items()):
            errors.add_metric([kind], n)
        yield errors
        reconnects = CounterMetricFamily(
            "agentnet_store_reconnects", "Store connections found dead and replaced", labels=["connection"]
        )
        for kind, n in sorted(db.stats.reconnects.items()):
            reconnects.add_metric([kind], n)
        yield reconnects
        yield _counter("agentnet_resyncs", "Resynchronisations with the store after a loss", readiness.resyncs)
        yield _gauge(
            "agentnet_ready", "1 when this replica serves (store reachable and caught up)", int(readiness.ready)
        )
        rev = getattr(app, "revocations", None)
        refreshed = getattr(rev, "refreshed_at", None)
        if refreshed is not None:
            yield _gauge(
                "agentnet_revocations_age_seconds",
                "Seconds since the revoked-device list was last re-read from the store",
                time.monotonic() - refreshed,
            )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


Observer = Callable[[float], None]
