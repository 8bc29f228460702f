"""The write-behind queue a store's writer drains: changes coalesced per session, in batches.

``save`` and ``close`` run on the actor's Trio thread and never block: they only update the
session's :class:`Pending` entry (the newest record wins, events accumulate, at most
``tail_limit`` of them). The writer waits for :meth:`PendingWrites.wait_batch`, takes the
whole queue with :meth:`take`, writes it, and reports it with :meth:`written`; ``commit()``
returns once everything queued before it has been written.
"""

from __future__ import annotations

from typing import Final

import attrs
import trio

from actors import ClosedSession, SessionChange, SessionRecord

from ._api import StoreStatistics

WRITE_BEHIND: Final = 0.05  # seconds: longest a queued change waits before its batch starts


@attrs.define
class Pending:
    """What one session has queued for the next batch, already coalesced."""

    closed: list[ClosedSession] = attrs.Factory(list)  # ends, in order (a code may be reused)
    record: SessionRecord | None = None  # newest record since the last end, if any
    events: list[tuple[int, str]] = attrs.Factory(list)  # at most tail_limit, oldest first

    def merge_newer(self, newer: Pending) -> None:
        """Fold ``newer`` (queued after this entry) into it: a batch that could not be written
        goes back in front of what was queued since."""
        self.closed.extend(newer.closed)
        if newer.closed:
            self.record, self.events = newer.record, newer.events
        elif newer.record is not None:
            self.record = newer.record
            self.events.extend(newer.events)


@attrs.frozen
class Batch:
    """What :meth:`PendingWrites.take` hands the writer."""

    sessions: dict[str, Pending]
    changes: int  # save/close calls coalesced into it
    generation: int  # pass to written() once it is written
    first_queued: float | None  # Trio time its oldest change was queued


class PendingWrites:
    """Changes waiting for the writer, with the bookkeeping ``commit()`` needs."""

    def __init__(self, tail_limit: int) -> None:
        self.tail_limit = tail_limit
        self.sessions: dict[str, Pending] = {}
        self.max_queued = 0  # most sessions queued at once
        self.closed = False  # no more changes accepted
        self._changes = 0  # save/close calls in sessions
        self._first_queued: float | None = None  # trio time of the oldest change queued
        self._queued_generation = 0  # save/close calls so far
        self._written_generation = 0  # of which written
        self._wake = trio.Event()  # something is pending
        self._urgent = trio.Event()  # a commit() is waiting: do not wait for WRITE_BEHIND
        self._written = trio.Event()  # set (and replaced) after each batch

    def save(self, change: SessionChange) -> None:
        """Queue a session's change, coalesced with what that session already has queued."""
        entry = self._entry(change.record.code)
        entry.record = change.record
        entry.events.extend(change.events)
        if len(entry.events) > self.tail_limit:
            del entry.events[: -self.tail_limit]

    def close(self, closed: ClosedSession) -> None:
        """Queue the end of a session: its record and tail go, a history record stays."""
        entry = self._entry(closed.code)
        entry.closed.append(closed)
        entry.record = None
        entry.events.clear()

    def _entry(self, code: str) -> Pending:
        """The pending entry of a session, counting one more queued change."""
        if self.closed:
            raise trio.ClosedResourceError("the session store is closed")
        entry = self.sessions.get(code)
        if entry is None:
            entry = self.sessions[code] = Pending()
            self.max_queued = max(self.max_queued, len(self.sessions))
        if self._first_queued is None:
            self._first_queued = trio.current_time()
            self._wake.set()
        self._changes += 1
        self._queued_generation += 1
        return entry

    async def commit(self) -> None:
        """Return once everything queued before the call is written. Starts the next batch at
        once rather than after ``WRITE_BEHIND``. Cancelling the wait does not cancel the write.
        """
        await trio.lowlevel.checkpoint()
        target = self._queued_generation
        while self._written_generation < target:
            self._urgent.set()
            await self._written.wait()

    def statistics(self, written: StoreStatistics) -> StoreStatistics:
        """``written`` (the writer's counters) with the queue's sizes, now and at most."""
        return attrs.evolve(written, queued=len(self.sessions), max_queued=self.max_queued)

    async def next_written(self) -> None:
        """Wait until the writer finishes its next batch (tests watch write-behind with it)."""
        await self._written.wait()

    async def wait_batch(self) -> None:
        """Wait until something is queued, then ``WRITE_BEHIND`` or until a commit() waits."""
        await self._wake.wait()
        assert self._first_queued is not None
        with trio.move_on_at(self._first_queued + WRITE_BEHIND):
            await self._urgent.wait()

    def take(self) -> Batch:
        """Everything pending, as one batch; the queue starts afresh."""
        batch = Batch(self.sessions, self._changes, self._queued_generation, self._first_queued)
        self.sessions, self._changes, self._first_queued = {}, 0, None
        self._wake = trio.Event()
        self._urgent = trio.Event()
        return batch

    def put_back(self, batch: Batch, sessions: dict[str, Pending]) -> None:
        """``sessions`` of ``batch`` were not written: queue them again, ahead of what came
        since, for the next batch."""
        for code, entry in sessions.items():
            newer = self.sessions.get(code)
            if newer is not None:
                entry.merge_newer(newer)
            self.sessions[code] = entry
        self._changes += batch.changes
        if self.sessions and self._first_queued is None:
            self._first_queued = batch.first_queued or trio.current_time()
            self._wake.set()

    def written(self, batch: Batch) -> None:
        """``batch`` is written: wake the commits that waited for it."""
        self._written_generation = batch.generation
        self._written.set()
        self._written = trio.Event()


def batch_written(stats: StoreStatistics, batch: Batch, started: float) -> StoreStatistics:
    """``stats`` counting ``batch``, whose write started at Trio time ``started``."""
    done = trio.current_time()
    return attrs.evolve(
        stats,
        batches_written=stats.batches_written + 1,
        changes_written=stats.changes_written + batch.changes,
        last_batch_size=len(batch.sessions),
        last_flush_latency=done - (batch.first_queued or started),
        last_write_duration=done - started,
    )
