"""The store that keeps nothing (``--store memory``): sessions end with the process."""

from __future__ import annotations

from typing import final

import trio

from actors import ClosedSession, Loaded, SessionChange

from ._api import StoreStatistics


@final
class MemoryStore:
    """Discards every change; ``load`` finds nothing and reports a clean shutdown."""

    durable = False
    persistent = False
    available = True

    async def load(self, *, tails: bool = True) -> Loaded:
        """No sessions, clean."""
        await trio.lowlevel.checkpoint()
        return Loaded(sessions=[], clean=True)

    async def tail(self, code: str) -> list[tuple[int, str]]:
        """No events are kept."""
        await trio.lowlevel.checkpoint()
        return []

    def save(self, change: SessionChange) -> None:
        """Discard a change."""

    def close(self, closed: ClosedSession) -> None:
        """Discard a session's end."""

    async def commit(self) -> None:
        """Return at once: nothing is ever pending."""
        await trio.lowlevel.checkpoint()

    def statistics(self) -> StoreStatistics:
        """All zero: nothing is written."""
        return StoreStatistics()

    async def history(self, *, limit: int, before: float | None) -> list[ClosedSession]:
        """No history is kept."""
        await trio.lowlevel.checkpoint()
        return []

    async def closed_session(self, code: str) -> ClosedSession | None:
        """No history is kept."""
        await trio.lowlevel.checkpoint()
        return None
