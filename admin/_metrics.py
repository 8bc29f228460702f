"""``/metrics``: the Prometheus exposition, read from the live figures at scrape time.

One private :class:`prometheus_client.CollectorRegistry` per server (never the global one) holds
one collector. Nothing is counted here: connections increment plain ints on
:class:`gateway.Counters`, actors theirs on ``supervisor.counters``, and :meth:`collect` reads
them all when scraped, so the hot path pays an attribute increment and nothing else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from gateway import AbuseStatistics, Counters, GcPauses, Histogram, metric_fields

if TYPE_CHECKING:
    from actors import Supervisor
    from store import Store

PREFIX: Final = "trio_sessions_"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
STATUSES: Final = ("active", "hibernating")


class ServerCollector:
    """Reads the supervisor, the connections' counters, the store and the collector's pauses."""

    def __init__(
        self,
        supervisor: Supervisor,
        counters: Counters,
        store: Store,
        gc_pauses: GcPauses | None = None,
        abuse: Callable[[], AbuseStatistics] | None = None,
        cluster: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._cluster = cluster
        self._counters = counters
        self._store = store
        self._gc_pauses = gc_pauses
        self._abuse = abuse

    def collect(self) -> Iterator[Metric]:
        """Every metric, as of now."""
        yield from self._sessions()
        yield from self._connections()
        yield from self._store_metrics()
        if self._abuse is not None:
            yield from _abuse_metrics(self._abuse())
        if self._cluster is not None:
            yield from _cluster_metrics(self._cluster())
        if self._gc_pauses is not None:
            yield _histogram(
                "gc_pause_seconds", "Pauses of the cyclic garbage collector", self._gc_pauses.pauses
            )
            yield _gauge(
                "gc_pause_longest_seconds",
                "The longest collector pause since start",
                self._gc_pauses.longest,
            )

    def _sessions(self) -> Iterator[Metric]:
        supervisor = self._supervisor
        stats = supervisor.statistics()
        yield _gauge("sessions_live", "Sessions with a running actor", stats.live)
        by_status = Counter(s.status for s in stats.sessions)
        yield _labelled(
            GaugeMetricFamily,
            "sessions",
            "Live sessions by status",
            "status",
            {status: by_status[status] for status in STATUSES},
        )
        yield _counter("sessions_created", "Sessions created since start", stats.created)
        yield _counter("sessions_closed", "Sessions closed for any reason", stats.closed)
        yield _counter("sessions_crashed", "Actors that raised and were closed", stats.crashed)
        yield _gauge(
            "participants_seated",
            "Participants holding a seat, connected or in grace",
            stats.seated,
        )
        yield _gauge(
            "participants_connected", "Participants with a live connection", stats.connected
        )
        actors = supervisor.counters
        yield _labelled(
            CounterMetricFamily,
            "events",
            "Session events published, by type",
            "type",
            actors.events,
        )
        yield _labelled(
            CounterMetricFamily,
            "resumes",
            "Resumes by outcome: replayed, snapshot, refused",
            "outcome",
            actors.resumes,
        )
        depths = [handle.inbox_depth() for handle in supervisor.handles()]
        yield _gauge(
            "inbox_depth_max",
            "Messages queued in the fullest session inbox",
            max(depths, default=0),
        )

    def _connections(self) -> Iterator[Metric]:
        counters = self._counters
        for attribute, spec in metric_fields(Counters):
            value = getattr(counters, attribute)
            if isinstance(value, Histogram):
                yield _histogram(spec.name, spec.help, value)
            elif spec.label is not None:
                yield _labelled(CounterMetricFamily, spec.name, spec.help, spec.label, value)
            elif spec.kind == "counter":
                yield _counter(spec.name, spec.help, value)
            else:
                yield _gauge(spec.name, spec.help, value)

    def _store_metrics(self) -> Iterator[Metric]:
        s = self._store.statistics()
        yield _gauge(
            "store_flush_latency_seconds",
            "Last batch: from its first change queued to its commit",
            s.last_flush_latency,
        )
        yield _gauge(
            "store_write_seconds", "Last batch: the transaction's own time", s.last_write_duration
        )
        yield _gauge("store_batch_size", "Last batch: sessions written", s.last_batch_size)
        yield _counter("store_batches", "Transactions committed", s.batches_written)
        yield _counter("store_changes", "Session changes committed", s.changes_written)
        yield _gauge("store_queued", "Sessions waiting for the writer", s.queued)
        yield _gauge("store_queued_max", "Most sessions ever waiting for the writer", s.max_queued)


def _abuse_metrics(a: AbuseStatistics) -> Iterator[Metric]:
    """The abuse limits' refusals and tables (``gateway.AbuseGuard``)."""
    yield _counter(
        "connections_refused",
        "Connections refused by a per-address or per-user limit (closed with 1013)",
        a.connections_refused,
    )
    yield _counter(
        "joins_locked_out",
        "Joins refused while the client address is locked out",
        a.joins_locked_out,
    )
    yield _counter(
        "joins_throttled",
        "Joins refused while the server-wide failed-join budget was spent",
        a.joins_throttled,
    )
    yield _counter("join_failures", "Joins by an unknown code", a.join_failures)
    yield _counter("join_lockouts", "Client addresses locked out of joins by code", a.lockouts)
    yield _counter(
        "sessions_refused", "Session creations refused by sessions_per_minute", a.sessions_refused
    )
    yield _gauge(
        "abuse_tracked_addresses", "Client addresses the limits remember", a.tracked_addresses
    )
    yield _gauge("abuse_tracked_users", "Users the limits remember", a.tracked_users)


_CLUSTER_GAUGES: Final = {
    "redis_available": "1 while this node reaches the cluster's Redis, else 0 (degraded mode)",
    "incarnation": "This node's fencing token (changes when it registers anew)",
    "relayed_connections": "Connections of this node seated in sessions other nodes own",
    "remote_peers": "Connections of other nodes seated in sessions this node owns",
    "links": "Relay links of this node to other node incarnations",
}
_CLUSTER_COUNTERS: Final = {
    "batches_published": "Relay batches this node published",
    "resets": "Relay link resets (a link lost operations, or its node is gone)",
    "sessions_taken_over": "Sessions this node took over from dead nodes",
}


def _cluster_metrics(stats: dict[str, int]) -> Iterator[Metric]:
    for name, help in _CLUSTER_GAUGES.items():
        yield _gauge("cluster_" + name, help, stats[name])
    for name, help in _CLUSTER_COUNTERS.items():
        yield _counter("cluster_" + name, help, stats[name])


def _gauge(name: str, help: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, help, value=value)


def _counter(name: str, help: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, help, value=value)


def _labelled(
    family: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    help: str,
    label: str,
    values: dict[str, int],
) -> Metric:
    metric = family(PREFIX + name, help, labels=[label])
    for key, value in sorted(values.items()):
        metric.add_metric([key], value)
    return metric


def _histogram(name: str, help: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        PREFIX + name, help, buckets=histogram.cumulative(), sum_value=histogram.sum
    )


class Metrics:
    """The exposition of one server: a private registry with a :class:`ServerCollector`."""

    def __init__(self, collector: ServerCollector) -> None:
        self._registry = CollectorRegistry()
        self._registry.register(collector)

    def render(self) -> bytes:
        """The text format (``CONTENT_TYPE``) of every metric, read now."""
        return generate_latest(self._registry)
