"""``open_store(url)``: the one entry point the server uses."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from ._api import Store
from ._memory import MemoryStore
from ._sqlite import TAIL_LIMIT, open_sqlite_store

HISTORY_RETENTION: Final = 30 * 86400.0  # seconds: closed sessions are kept 30 days
DEFAULT_URL: Final = "sqlite:trio-sessions.db"


@asynccontextmanager
async def open_store(
    url: str,
    *,
    durability: str = "default",
    history_retention: float = HISTORY_RETENTION,
    tail_limit: int = TAIL_LIMIT,
    wall: Callable[[], float] = time.time,
) -> AsyncIterator[Store]:
    """Open the session store named by ``url`` for the lifetime of the block.

    Args:
        url: ``memory`` (keeps nothing) or ``sqlite:PATH`` (PATH relative to the working
            directory; created if missing).
        durability: ``default`` (``synchronous=NORMAL``: a process crash loses at most the
            last ``WRITE_BEHIND`` of changes) or ``strict`` (``synchronous=FULL``; the store
            is ``durable`` and callers ``commit()`` after each change).
        history_retention: seconds a closed session's history row is kept.
        tail_limit: events kept per session; older ones are deleted as new ones are written.
        wall: the wall clock (seconds since the epoch) for history retention; tests inject one.

    Raises:
        ValueError: an unknown url scheme or durability.
        StoreError: the file is not a readable session store; the message names it.
    """
    if url == "memory":
        yield MemoryStore()
    elif url.startswith("sqlite:") and len(url) > len("sqlite:"):
        async with open_sqlite_store(
            Path(url.removeprefix("sqlite:")),
            durability=durability,
            history_retention=history_retention,
            tail_limit=tail_limit,
            wall=wall,
        ) as store:
            yield store
    else:
        raise ValueError(f"store url must be 'memory' or 'sqlite:PATH', got {url!r}")
