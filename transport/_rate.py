"""A frame-rate limit on Trio's clock, for every frame a client sends whatever its kind."""

from __future__ import annotations

from typing import Final

import trio

MAX_FRAME_RATE: Final = 1000.0  # frames per second a client may send, of any kind
FRAME_BURST: Final = 2000  # frames a client may send at once above the rate


class FrameBucket:
    """A token bucket on Trio's clock: ``rate`` frames per second, at most ``burst`` at once."""

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

    def take(self, frames: int) -> bool:
        """Spend ``frames`` tokens; ``False`` (nothing spent) if there are not that many."""
        now = trio.current_time()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if frames > self._tokens:
            return False
        self._tokens -= frames
        return True
