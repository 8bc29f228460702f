"""Process-wide connection counters, and the metrics exposition that reads them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import attrs

from protocol import ErrorCode

if TYPE_CHECKING:
    from actors import Supervisor, SupervisorStatistics

    from ._gc_pauses import GcPauses

METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PREFIX: Final = "trio_sessions_"


@attrs.define
class Counters:
    """What the connections count, for metrics."""

    open: int = 0
    accepted: int = 0
    slow_consumers: int = 0
    heartbeat_timeouts: int = 0
    hello_timeouts: int = 0
    rate_limited: int = 0
    bad_requests: int = 0
    frames_received: int = 0
    frames_sent: int = 0

    def count_error(self, code: ErrorCode) -> None:
        """Count an error reply by its code (those that have a counter)."""
        if code is ErrorCode.BAD_REQUEST:
            self.bad_requests += 1


@attrs.frozen
class Metric:
    """One exposed figure: its name (without prefix), type, help text and how to read it."""

    name: str
    kind: str  # "gauge" | "counter"
    help: str
    read: Callable[[SupervisorStatistics, Counters], int]


METRICS: Final = (
    Metric("sessions_live", "gauge", "Sessions with a running actor", lambda s, c: s.live),
    Metric("sessions_created", "counter", "Sessions created since start", lambda s, c: s.created),
    Metric("sessions_closed", "counter", "Sessions closed for any reason", lambda s, c: s.closed),
    Metric(
        "sessions_crashed", "counter", "Actors that raised and were closed", lambda s, c: s.crashed
    ),
    Metric(
        "participants_seated",
        "gauge",
        "Participants holding a seat, connected or in grace",
        lambda s, c: s.seated,
    ),
    Metric(
        "participants_connected",
        "gauge",
        "Participants with a live connection",
        lambda s, c: s.connected,
    ),
    Metric("connections_open", "gauge", "Open client connections", lambda s, c: c.open),
    Metric("connections_accepted", "counter", "Connections accepted", lambda s, c: c.accepted),
    Metric("frames_received", "counter", "Frames from clients", lambda s, c: c.frames_received),
    Metric("frames_sent", "counter", "Frames handed to transports", lambda s, c: c.frames_sent),
    Metric(
        "slow_consumers", "counter", "Connections closed with 4008", lambda s, c: c.slow_consumers
    ),
    Metric(
        "heartbeat_timeouts",
        "counter",
        "Connections closed with 4003",
        lambda s, c: c.heartbeat_timeouts,
    ),
    Metric(
        "hello_timeouts", "counter", "Connections closed with 4001", lambda s, c: c.hello_timeouts
    ),
    Metric(
        "rate_limited", "counter", "Frames refused with rate_limited", lambda s, c: c.rate_limited
    ),
    Metric(
        "bad_requests", "counter", "Requests refused with bad_request", lambda s, c: c.bad_requests
    ),
)
"""Every metric, defined once: the exposition and the docs' table follow this list."""


def render_metrics(
    supervisor: Supervisor, counters: Counters, gc_pauses: GcPauses | None = None
) -> str:
    """Prometheus text exposition of :data:`METRICS`, names prefixed, counters ending ``_total``,
    and the collector's pauses when watched."""
    stats = supervisor.statistics()
    lines = []
    for metric in METRICS:
        full = METRICS_PREFIX + metric.name + ("_total" if metric.kind == "counter" else "")
        lines += [
            f"# HELP {full} {metric.help}.",
            f"# TYPE {full} {metric.kind}",
            f"{full} {metric.read(stats, counters)}",
        ]
    if gc_pauses is not None:
        lines += gc_pauses.render(METRICS_PREFIX)
    return "\n".join(lines) + "\n"
