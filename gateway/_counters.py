"""Process-wide connection counters: what the connections count, read by the metrics collector.

The hot path stays cheap: a connection increments a plain attribute, and the collector
(``admin``) reads every figure only when ``/metrics`` is scraped. Each field declares its own
metric with :func:`counter`, :func:`gauge`, :func:`labelled` or :func:`histogram`, so adding a
figure to ``/metrics`` is one line in :class:`Counters`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from typing import Final, cast

import attrs
from attrs import AttrsInstance

from protocol import ErrorCode

METRIC: Final = "metric"  # the attrs metadata key of a field's MetricSpec
# Emit-to-socket-write latency: most frames are written within a scheduler pass or two.
FANOUT_BUCKETS: Final = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@attrs.frozen
class MetricSpec:
    """How a field is exposed: its name (without prefix or ``_total``), its Prometheus type
    (``counter``, ``gauge``, or ``histogram``), its help text, and for a ``Counter[str]`` field
    the label its keys go under."""

    name: str
    kind: str
    help: str
    label: str | None = None


class Histogram:
    """Observations counted by bucket (upper bounds, inclusive), their sum and count.

    ``observe`` is a bisect and three additions: cheap enough for a sampled hot path.
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, observations <= le)`` per bound, ending with ``+Inf`` (Prometheus buckets)."""
        total = 0
        buckets = []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            buckets.append((bound, float(total)))
        return buckets


# The field helpers return the attrs field typed as its value, so ``open: int = gauge(...)``
# type-checks as an int attribute with a default. Each field gets its own mutable value from a
# factory, which RUF009 cannot see through (hence its noqa below).
def counter(help: str, *, name: str = "") -> int:
    """An ``int`` field exposed as a counter (``trio_sessions_<name>_total``)."""
    return attrs.field(default=0, metadata={METRIC: MetricSpec(name, "counter", help)})


def gauge(help: str, *, name: str = "") -> int:
    """An ``int`` field exposed as a gauge (``trio_sessions_<name>``)."""
    return attrs.field(default=0, metadata={METRIC: MetricSpec(name, "gauge", help)})


def labelled(label: str, help: str, *, name: str = "") -> Counter[str]:
    """A ``Counter[str]`` field exposed as one counter with its keys as ``label``."""
    spec = MetricSpec(name, "counter", help, label)
    return cast("Counter[str]", attrs.field(factory=Counter, metadata={METRIC: spec}))


def histogram(help: str, bounds: Sequence[float], *, name: str = "") -> Histogram:
    """A :class:`Histogram` field exposed as a Prometheus histogram."""
    spec = MetricSpec(name, "histogram", help)
    return attrs.field(factory=lambda: Histogram(bounds), metadata={METRIC: spec})


@attrs.define
class Counters:
    """What the connections count, for metrics (one instance per server, on its Trio thread)."""

    open: int = gauge("Open client connections", name="connections_open")
    accepted: int = counter(
        "Connections that completed the WebSocket handshake", name="connections_accepted"
    )
    frames_received: int = counter("Frames from clients")
    frames_sent: int = counter("Frames handed to connections (each recipient counts)")
    slow_consumers: int = counter("Connections closed with 4008: send buffer full")
    heartbeat_timeouts: int = counter("Connections closed with 4003: no heartbeat")
    hello_timeouts: int = counter("Connections closed with 4001: no hello in time")
    rate_limited: int = counter("Messages refused with rate_limited")
    auth_failures: int = counter("Tokens refused (hello, auth)")
    requests: Counter[str] = labelled("type", "Requests received, by type")  # noqa: RUF009
    errors: Counter[str] = labelled("code", "Error replies sent, by code")  # noqa: RUF009
    fanout: Histogram = histogram(  # noqa: RUF009
        "Seconds from the first frame queued in a write pass (an actor's emit) to the end of "
        "that pass's socket writes",
        FANOUT_BUCKETS,
        name="fanout_latency_seconds",
    )

    def count_request(self, kind: str) -> None:
        """Count a request by its ``type``."""
        self.requests[kind] += 1

    def count_error(self, code: ErrorCode) -> None:
        """Count an error reply by its code."""
        self.errors[code.value] += 1

    def observe_fanout(self, seconds: float) -> None:
        """Record one write pass's latency (``transport.WriteCoalescer``'s ``on_pass``)."""
        self.fanout.observe(seconds)


def metric_fields(cls: type[AttrsInstance]) -> list[tuple[str, MetricSpec]]:
    """``(attribute, spec)`` of every field of the attrs class ``cls`` that declares a metric,
    the spec's name defaulting to the attribute's."""
    return [
        (field.name, attrs.evolve(spec, name=spec.name or field.name))
        for field in attrs.fields(cls)
        if (spec := field.metadata.get(METRIC)) is not None
    ]
