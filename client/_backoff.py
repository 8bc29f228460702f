"""Reconnection delays: exponential backoff with full jitter."""

from __future__ import annotations

import random

import attrs


@attrs.define
class Backoff:
    """Delay before reconnect attempt ``n`` (0-based): uniform in ``[0, min(cap, base * 2**n)]``.

    After the server said "try again later" (close 1013: too many connections from this address
    or user) the delay is ``busy`` seconds longer, so a crowd of clients turned away together
    does not come straight back. ``give_up_after`` (seconds since the connection was lost,
    ``None`` = never) ends retrying. ``rng`` can be seeded for reproducible simulations.
    """

    base: float = 0.5
    cap: float = 30.0
    give_up_after: float | None = None
    rng: random.Random = attrs.Factory(random.Random)
    busy: float = 5.0

    def delay(self, attempt: int, *, busy: bool = False) -> float:
        """Seconds to wait before attempt ``attempt`` (after a 1013 close when ``busy``)."""
        jitter = self.rng.uniform(0.0, min(self.cap, self.base * 2.0 ** min(attempt, 32)))
        return jitter + (self.busy if busy else 0.0)
