"""What every store offers beyond :class:`actors.SessionStore`: statistics, history, errors."""

from __future__ import annotations

from typing import Protocol

import attrs

from actors import ClosedSession, Loaded, SessionStore


class StoreError(Exception):
    """The session store cannot be opened, read or written.

    Raised at start-up for a file that is corrupt, unreadable, not a database, or written by a
    newer version; and by the writer when a transaction fails (a full disk, an I/O error). The
    message names the file.
    """


@attrs.frozen(kw_only=True)
class StoreStatistics:
    """A snapshot of a store's writer, for metrics.

    ``changes_written`` counts ``save``/``close`` calls committed, ``last_batch_size`` the
    sessions the last transaction wrote once coalesced; ``last_flush_latency`` is the time in
    seconds from the first change of the last batch being queued to its commit (write-behind
    wait included), ``last_write_duration`` the transaction's own time; ``queued`` and
    ``max_queued`` count sessions waiting for the writer now and at most so far.
    """

    batches_written: int = 0
    changes_written: int = 0
    last_batch_size: int = 0
    last_flush_latency: float = 0.0  # seconds
    last_write_duration: float = 0.0  # seconds
    queued: int = 0
    max_queued: int = 0


class Store(SessionStore, Protocol):
    """A :class:`actors.SessionStore` as ``open_store`` returns it, with metrics and history."""

    async def load(self, *, tails: bool = True) -> Loaded:
        """Every stored session; without its event tail when ``tails`` is false."""
        ...

    async def tail(self, code: str) -> list[tuple[int, str]]:
        """One session's stored event tail, oldest first."""
        ...

    def statistics(self) -> StoreStatistics:
        """A snapshot of the writer's counters."""
        ...

    async def history(self, *, limit: int, before: float | None) -> list[ClosedSession]:
        """Closed sessions, newest first, ended before ``before`` (wall seconds) if given."""
        ...

    async def closed_session(self, code: str) -> ClosedSession | None:
        """The history record of the last session closed with ``code``, if still kept."""
        ...
