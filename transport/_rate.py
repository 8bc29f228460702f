"""A token bucket on Trio's clock: the frame-rate limit here, the message-rate limit in gateway."""

from __future__ import annotations

import math
from typing import Final

import trio

MAX_FRAME_RATE: Final = 1000.0  # frames per second a client may send, of any kind
FRAME_BURST: Final = 2000  # frames a client may send at once above the rate


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` at once; a rate of 0 (or inf) allows all."""

    __slots__ = (
        "_burst",
        "_last",
        "_rate",
        "_tokens",
    )

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = trio.current_time()

    def take(self, tokens: int = 1) -> bool:
        """Spend ``tokens``; ``False`` (nothing spent) if there are not that many."""
        if self._rate <= 0 or self._rate == math.inf:
            return True
        now = trio.current_time()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if tokens > self._tokens:
            return False
        self._tokens -= tokens
        return True
