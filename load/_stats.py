"""Counters and a latency histogram that merge across load processes."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import attrs

_PER_OCTAVE = 32  # histogram buckets per doubling: about 2% resolution


def _bucket(seconds: float) -> int:
    micros = max(seconds * 1e6, 1.0)
    return int(math.log2(micros) * _PER_OCTAVE)


def _value(bucket: int) -> float:
    """The upper edge of ``bucket``, in seconds."""
    return 2 ** ((bucket + 1) / _PER_OCTAVE) / 1e6


@attrs.define
class Stats:
    """What one load process measured; ``merge`` adds another's."""

    clients: int = 0  # clients the plan asked for
    connected: int = 0  # clients that completed connect and join
    connect_seconds: list[float] = attrs.Factory(list)
    sent: int = 0  # room messages sent
    expected: int = 0  # deliveries those messages should cause
    delivered: int = 0  # deliveries received (each counted once per receiver)
    patches: int = 0  # state patches sent by hosts
    resumes_replayed: int = 0
    resumes_snapshot: int = 0
    drops: int = 0  # deliberate abrupt disconnects (churn)
    errors: Counter[str] = attrs.Factory(Counter)  # by error code or close code
    latency: Counter[int] = attrs.Factory(Counter)  # histogram buckets -> count
    max_latency: float = 0.0
    cpu_seconds: float = 0.0  # the load process's own CPU time
    wall_seconds: float = 0.0
    send_lag: float = 0.0  # how late the senders ran behind their schedule, worst case

    def record_latency(self, seconds: float) -> None:
        self.latency[_bucket(seconds)] += 1
        if seconds > self.max_latency:
            self.max_latency = seconds

    def merge(self, other: Stats) -> None:
        for field in attrs.fields(Stats):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if field.name in ("max_latency", "send_lag", "wall_seconds"):
                setattr(self, field.name, max(mine, theirs))
            elif isinstance(mine, Counter):
                mine.update(theirs)
            elif isinstance(mine, list):
                mine.extend(theirs)
            else:
                setattr(self, field.name, mine + theirs)

    def percentile(self, fraction: float) -> float | None:
        """Latency at ``fraction`` (0.99 for p99), in seconds; ``None`` with no samples."""
        total = sum(self.latency.values())
        if not total:
            return None
        rank = fraction * total
        seen = 0
        for bucket in sorted(self.latency):
            seen += self.latency[bucket]
            if seen >= rank:
                return min(_value(bucket), self.max_latency)
        return self.max_latency

    def summary(self) -> dict[str, Any]:
        """The report's figures, JSON-ready (times in milliseconds)."""
        connects = sorted(self.connect_seconds)

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 2)

        return {
            "clients": {"planned": self.clients, "connected": self.connected},
            "connect_ms": {
                "p50": ms(connects[len(connects) // 2]) if connects else None,
                "p99": ms(connects[int(len(connects) * 0.99)]) if connects else None,
                "max": ms(connects[-1]) if connects else None,
            },
            "messages": {
                "sent": self.sent,
                "expected": self.expected,
                "delivered": self.delivered,
                "ratio": round(self.delivered / self.expected, 5) if self.expected else None,
                "delivered_per_s": round(self.delivered / self.wall_seconds, 1)
                if self.wall_seconds
                else None,
            },
            "latency_ms": {
                "p50": ms(self.percentile(0.50)),
                "p90": ms(self.percentile(0.90)),
                "p99": ms(self.percentile(0.99)),
                "max": ms(self.max_latency) if self.latency else None,
            },
            "patches": self.patches,
            "resumes": {
                "drops": self.drops,
                "replayed": self.resumes_replayed,
                "snapshot": self.resumes_snapshot,
            },
            "errors": dict(self.errors),
        }
