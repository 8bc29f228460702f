"""Reconnection delays: exponential backoff with full jitter."""

from __future__ import annotations

import random

import attrs


@attrs.define
class Backoff:
    """Delay before reconnect attempt ``n`` (0-based): uniform in ``[0, min(cap, base * 2**n)]``.

    ``give_up_after`` (seconds since the connection was lost, ``None`` = never) ends retrying.
    ``rng`` can be seeded for reproducible simulations.
    """

    base: float = 0.5
    cap: float = 30.0
    give_up_after: float | None = None
    rng: random.Random = attrs.Factory(random.Random)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt``."""
        return self.rng.uniform(0.0, min(self.cap, self.base * 2.0 ** min(attempt, 32)))
