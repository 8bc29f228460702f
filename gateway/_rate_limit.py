"""A token bucket on Trio's clock."""

from __future__ import annotations

import trio


class TokenBucket:
    """Allows ``burst`` requests at once, then ``rate`` per second; ``rate=0`` allows all."""

    __slots__ = (
        "_burst",
        "_rate",
        "_stamp",
        "_tokens",
    )

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = trio.current_time()

    def take(self) -> bool:
        """Spend one token; ``False`` if there is none."""
        if self._rate <= 0:
            return True
        now = trio.current_time()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
