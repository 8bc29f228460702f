"""Hello tokens: where they come from, and when the client refreshes them.

A client is given either a fixed ``token`` or a ``token_provider``: a function the client calls
for a fresh token before every ``hello`` (each connect and reconnect) and before the current
token expires (``auth:refresh``). The provider may be a plain function or a coroutine function;
the client awaits what it returns if it is awaitable.

Expiry is read from the server's replies (``expires_at``, ISO 8601 wall-clock time) and turned
into a number of seconds *once*, against the client's wall clock (``wall``, injectable); from
then on the refresh is timed on Trio's clock, as every other timer of the client.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final

import attrs

TokenProvider = Callable[[], Awaitable[str] | str]
"""Returns a fresh hello token (a JWT on a server with a key); may be ``async``."""

# The client refreshes a token once this share of its remaining life has passed: early enough
# that a slow provider and a clock skew of a fifth of the lifetime still beat the expiry.
REFRESH_AT: Final = 0.8
MIN_REFRESH_RETRY: Final = 1.0  # seconds; a refused refresh is retried no sooner than this


class TokenUnavailable(Exception):
    """The token provider raised: this connect attempt (or refresh) fails and is retried."""


def seconds_left(expires_at: str, wall: Callable[[], float]) -> float:
    """Seconds from ``wall()`` until ``expires_at`` (ISO 8601); negative once it has passed."""
    return datetime.fromisoformat(expires_at).timestamp() - wall()


@attrs.define
class Tokens:
    """The token the next ``hello`` carries, and the provider that renews it (if any)."""

    token: str | None = None
    provider: TokenProvider | None = None

    async def fresh(self) -> str | None:
        """The token for a new ``hello`` or ``auth:refresh``: the provider's (asked now), else the
        one held. Raises :class:`TokenUnavailable` when the provider fails."""
        if self.provider is None:
            return self.token
        try:
            result = self.provider()
            token = await result if inspect.isawaitable(result) else result
        except Exception as exc:
            raise TokenUnavailable(f"the token provider failed: {exc!r}") from exc
        if not isinstance(token, str) or not token:
            raise TokenUnavailable(f"the token provider returned {token!r}, not a token")
        self.token = token
        return token


def refresh_deadline(now: float, left: float, *, retry: bool = False) -> float:
    """When (Trio time) to refresh a token with ``left`` seconds to live; ``inf``: never.

    After a refused refresh (``retry``) the next try waits at least ``MIN_REFRESH_RETRY``; with
    less than that left, the client lets the token expire and reconnects with a fresh one. A
    token already past its expiry (the server accepts one within its leeway, and closes the
    link with 4005 when the leeway runs out) is not refreshed either: a provider that hands
    out that same token again would otherwise make the client refresh in a loop.
    """
    if left <= (MIN_REFRESH_RETRY if retry else 0.0):
        return math.inf
    if retry:
        return now + max(MIN_REFRESH_RETRY, REFRESH_AT * left)
    return now + REFRESH_AT * left
