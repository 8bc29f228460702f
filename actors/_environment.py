"""Where the server's randomness and display time come from.

Production draws ids and secrets from the operating system and shows wall-clock time. A
simulation injects a seeded generator and a clock that is a fixed epoch plus Trio's (virtual)
time, so a run repeats exactly and every displayed deadline matches the enforced one. Logic
never reads either clock: deadlines are on Trio's clock, display fields come from here.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import attrs
import trio

SIMULATED_EPOCH: Final = 1_767_225_600.0  # 2026-01-01T00:00:00Z: virtual time 0 in simulations


@functools.lru_cache(maxsize=4)
def _iso(millis: int) -> str:
    # Every event carries ``at``; under load many share a millisecond, and formatting is dear.
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


@attrs.frozen
class Environment:
    """The server's source of randomness (``rng``) and of display time (``wall``, seconds since
    the Unix epoch)."""

    rng: random.Random
    wall: Callable[[], float]

    @classmethod
    def production(cls) -> Environment:
        """Operating-system randomness and the real wall clock."""
        return cls(random.SystemRandom(), time.time)

    @classmethod
    def simulated(cls, seed: int) -> Environment:
        """A seeded generator, and display time = ``SIMULATED_EPOCH`` + Trio's clock."""
        return cls(random.Random(seed), lambda: SIMULATED_EPOCH + trio.current_time())

    def iso(self, offset: float = 0.0) -> str:
        """Display time ``offset`` seconds from now, ISO 8601 with milliseconds."""
        return _iso(round((self.wall() + offset) * 1000))

    def token_hex(self, nbytes: int) -> str:
        """``nbytes`` random bytes as hex (ids)."""
        return self.rng.getrandbits(8 * nbytes).to_bytes(nbytes, "big").hex()

    def token_bytes(self, nbytes: int) -> bytes:
        """``nbytes`` random bytes (secrets)."""
        return self.rng.getrandbits(8 * nbytes).to_bytes(nbytes, "big")
