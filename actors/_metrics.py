"""Prometheus text exposition of the server's counters (``GET /metrics``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._connection import ConnectionCounters
    from ._supervisor import Supervisor

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP = {
    "sessions_live": ("gauge", "Sessions with a running actor"),
    "sessions_created": ("counter", "Sessions created since start"),
    "sessions_closed": ("counter", "Sessions closed since start, for any reason"),
    "sessions_crashed": ("counter", "Session actors that raised and were closed"),
    "participants_seated": ("gauge", "Participants holding a seat, connected or in grace"),
    "participants_connected": ("gauge", "Participants with a live connection"),
    "connections_open": ("gauge", "Open client connections"),
    "connections_accepted": ("counter", "Connections accepted since start"),
    "frames_received": ("counter", "Frames received from clients"),
    "frames_sent": ("counter", "Frames handed to connections for sending"),
    "slow_consumers": ("counter", "Connections closed with 4008"),
    "heartbeat_timeouts": ("counter", "Connections closed with 4003"),
    "hello_timeouts": ("counter", "Connections closed with 4001"),
    "rate_limited": ("counter", "Requests refused with rate_limited"),
    "bad_requests": ("counter", "Requests refused with bad_request"),
}


def render_metrics(supervisor: Supervisor, counters: ConnectionCounters) -> str:
    """All figures, each with HELP and TYPE lines, names prefixed ``trio_sessions_``."""
    stats = supervisor.statistics()
    values = {
        "sessions_live": stats.live,
        "sessions_created": stats.created,
        "sessions_closed": stats.closed,
        "sessions_crashed": stats.crashed,
        "participants_seated": sum(s.participants for s in stats.sessions),
        "participants_connected": sum(s.connected for s in stats.sessions),
        "connections_open": counters.open,
        "connections_accepted": counters.accepted,
        "frames_received": counters.frames_received,
        "frames_sent": counters.frames_sent,
        "slow_consumers": counters.slow_consumers,
        "heartbeat_timeouts": counters.heartbeat_timeouts,
        "hello_timeouts": counters.hello_timeouts,
        "rate_limited": counters.rate_limited,
        "bad_requests": counters.bad_requests,
    }
    lines = []
    for name, value in values.items():
        kind, text = _HELP[name]
        full = "trio_sessions_" + name + ("_total" if kind == "counter" else "")
        lines += [f"# HELP {full} {text}.", f"# TYPE {full} {kind}", f"{full} {value}"]
    return "\n".join(lines) + "\n"
