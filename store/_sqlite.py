"""The SQLite store: write-behind batches, one writer at a time, WAL, bounded tails and history.

How a change reaches the disk: ``save``/``close`` (synchronous, on the actor's Trio thread) only
put it in ``_pending`` (``_pending.py``), one entry per session (the newest record wins, events
accumulate, at most ``tail_limit`` of them). The writer task wakes on the first change, waits at
most ``WRITE_BEHIND`` (or not at all once a ``commit()`` is waiting), takes everything pending
and writes it as one transaction in a worker thread. Only one batch runs at a time, and every
other use of the connection (``load``, history reads) takes the same lock, so the connection is
never used by two threads at once.
"""

from __future__ import annotations

import gc
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, final

import cattrs.preconf.orjson
import trio

from actors import (
    ClosedSession,
    Loaded,
    SessionChange,
    SessionRecord,
    StoredSession,
)

from ._api import StoreError, StoreStatistics
from ._pending import Pending, PendingWrites, batch_written
from ._schema import open_database, write_transaction

logger = logging.getLogger(__name__)

PRUNE_INTERVAL: Final = 60.0  # seconds of wall time between two history retention passes
TAIL_LIMIT: Final = 1000  # events kept per session by default
DURABILITY: Final = {"default": "NORMAL", "strict": "FULL"}  # mode -> PRAGMA synchronous

# One private converter (never the global one): records are stored as orjson bytes. Reading
# back, the free-form dicts (state, meta) are taken as orjson built them rather than copied, and
# validation is not detailed: this halves the time load() spends structuring records.
_converter: Final = cattrs.preconf.orjson.make_converter(detailed_validation=False)
_converter.register_structure_hook_func(
    lambda cls: cls == dict[str, Any] or cls == (dict[str, Any] | None),
    lambda value, _: value,
)

_HISTORY_COLUMNS: Final = (
    "code, host_user_id, started_at, ended_at, ended_wall, duration_s, reason, peak_participants"
)


@final
class SqliteStore:
    """A :class:`store.Store` on one SQLite file; build it with ``open_store("sqlite:PATH")``.

    ``save`` and ``close`` never block: they queue. A record handed to ``save`` must not be
    mutated afterwards: it is encoded later, in the writer's thread.
    """

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        clean: bool,
        durable: bool,
        tail_limit: int,
        history_retention: float,
        wall: Callable[[], float],
    ) -> None:
        self.path = path
        self.durable = durable
        self.persistent = True
        self.available = True  # a local file: a failed write is an error, not an outage
        self._conn = conn
        self._clean = clean  # as the previous run left it
        self._tail_limit = tail_limit
        self._retention = history_retention
        self._wall = wall
        self._last_prune = wall()  # open_database just pruned
        self._lock = trio.Lock()  # one user of the connection at a time
        self._pending = PendingWrites(tail_limit)
        self._stats = StoreStatistics()

    # ------------------------------------------------------------------ queueing (Trio thread)

    def save(self, change: SessionChange) -> None:
        """Queue a session's change, coalesced with what that session already has queued."""
        self._pending.save(change)

    def close(self, closed: ClosedSession) -> None:
        """Queue the end of a session: its record and tail are deleted, a history row kept."""
        self._pending.close(closed)

    async def commit(self) -> None:
        """Return once everything queued before the call is committed.

        Starts the next batch at once rather than after ``WRITE_BEHIND``. Cancelling the wait
        does not cancel the write.
        """
        await self._pending.commit()

    def statistics(self) -> StoreStatistics:
        """A snapshot of the writer's counters."""
        return self._pending.statistics(self._stats)

    # ------------------------------------------------------------------------------ the writer

    async def run_writer(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Write batches as changes come; never returns unless cancelled.

        Raises:
            StoreError: a transaction failed (the batch is lost, the file is unchanged by it).
        """
        task_status.started()
        while True:
            await self._pending.wait_batch()
            await self._write_pending()

    async def _write_pending(self) -> None:
        """Take everything pending and commit it as one transaction."""
        batch = self._pending.take()
        prune_before = None
        wall = self._wall()
        if wall - self._last_prune >= PRUNE_INTERVAL:
            prune_before = wall - self._retention
            self._last_prune = wall
        async with self._lock:
            started = trio.current_time()
            try:
                await trio.to_thread.run_sync(self._write_batch, batch.sessions, prune_before)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write the session store {self.path}: {exc}") from exc
        self._stats = batch_written(self._stats, batch, started)
        self._pending.written(batch)

    def _write_batch(self, batch: dict[str, Pending], prune_before: float | None) -> None:
        """One transaction for the whole batch (worker thread)."""
        conn = self._conn
        with write_transaction(conn):
            for code, entry in batch.items():
                for closed in entry.closed:
                    conn.execute("DELETE FROM sessions WHERE code = ?", (code,))
                    conn.execute("DELETE FROM events WHERE code = ?", (code,))
                    conn.execute(
                        f"INSERT INTO history ({_HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            closed.code,
                            closed.host_user_id,
                            closed.started_at,
                            closed.ended_at,
                            closed.ended_wall,
                            closed.duration_s,
                            closed.reason,
                            closed.peak_participants,
                        ),
                    )
                if entry.record is not None:
                    self._write_session(code, entry.record, entry.events)
            if prune_before is not None:
                conn.execute("DELETE FROM history WHERE ended_wall < ?", (prune_before,))

    def _write_session(
        self, code: str, record: SessionRecord, events: list[tuple[int, str]]
    ) -> None:
        """Upsert a session's record, append its new events and trim its tail."""
        conn = self._conn
        conn.execute(
            "INSERT INTO sessions (code, seq, record) VALUES (?, ?, ?) ON CONFLICT (code)"
            " DO UPDATE SET seq = excluded.seq, record = excluded.record",
            (code, record.seq, _converter.dumps(record)),
        )
        if not events:
            return
        conn.executemany(
            "INSERT OR REPLACE INTO events (code, seq, frame) VALUES (?, ?, ?)",
            [(code, seq, frame) for seq, frame in events],
        )
        newest = max(record.seq, events[-1][0])
        conn.execute(
            "DELETE FROM events WHERE code = ? AND seq <= ?", (code, newest - self._tail_limit)
        )

    # --------------------------------------------------------------------------------- reading

    async def load(self, *, tails: bool = True) -> Loaded:
        """Every stored session with its event tail (oldest first), read in one transaction.

        With ``tails=False`` each session comes with no events (about half the time for full
        tails): read a session's tail with :meth:`tail` when a resume needs it.

        Raises:
            StoreError: the file cannot be read; nothing is returned.
        """
        async with self._lock:
            try:
                sessions = await trio.to_thread.run_sync(self._read_sessions, tails)
            except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
                raise StoreError(f"cannot load the session store {self.path}: {exc}") from exc
        return Loaded(sessions=sessions, clean=self._clean)

    async def tail(self, code: str) -> list[tuple[int, str]]:
        """The stored event tail of one session, oldest first (committed events only)."""
        rows = await self._query(
            "SELECT seq, frame FROM events WHERE code = ? ORDER BY seq", (code,)
        )
        return [(seq, frame) for seq, frame in rows]

    def _read_sessions(self, tails: bool) -> list[StoredSession]:
        """Read and decode every session (worker thread).

        Decoding creates millions of objects and none is garbage, so the cyclic garbage
        collector is paused meanwhile and what was loaded is then frozen out of its reach
        (``gc.freeze``, as the server does with what it built at start-up): otherwise its
        passes over the new objects took as long as the load itself (10,000 sessions: 3 s).
        """
        paused = gc.isenabled()
        gc.disable()
        try:
            sessions = self._read_all(tails)
            gc.freeze()
            return sessions
        finally:
            if paused:
                gc.enable()

    def _read_all(self, tails: bool) -> list[StoredSession]:
        """Read every record (and event) in one read transaction, then decode them."""
        conn = self._conn
        counts: list[tuple[str, int]] = []
        rows: list[tuple[int, str]] = []
        conn.execute("BEGIN")
        try:
            records = conn.execute("SELECT code, record FROM sessions ORDER BY code").fetchall()
            if tails:
                counts = conn.execute(
                    "SELECT code, count(*) FROM events GROUP BY code ORDER BY code"
                ).fetchall()
                # (seq, frame) rows as sqlite3 builds them, sliced per session by the counts:
                # no code string per row, no regrouping (a third less time for 1M events).
                rows = conn.execute("SELECT seq, frame FROM events ORDER BY code, seq").fetchall()
        finally:
            conn.execute("COMMIT")
        by_code: dict[str, list[tuple[int, str]]] = {}
        start = 0
        for code, count in counts:
            by_code[code] = rows[start : start + count]
            start += count
        structure = _converter.loads
        return [
            StoredSession(record=structure(blob, SessionRecord), events=by_code.get(code, []))
            for code, blob in records
        ]

    async def history(self, *, limit: int, before: float | None) -> list[ClosedSession]:
        """Closed sessions, newest first; only those ended before ``before`` when it is given."""
        query = f"SELECT {_HISTORY_COLUMNS} FROM history"
        params: tuple[float | int, ...] = (limit,)
        if before is not None:
            query += " WHERE ended_wall < ?"
            params = (before, limit)
        query += " ORDER BY ended_wall DESC LIMIT ?"
        rows = await self._query(query, params)
        return [_history_record(row) for row in rows]

    async def closed_session(self, code: str) -> ClosedSession | None:
        """The history record of the last session closed with ``code``, if still kept."""
        rows = await self._query(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE code = ?"
            " ORDER BY ended_wall DESC LIMIT 1",
            (code,),
        )
        return _history_record(rows[0]) if rows else None

    async def _query(
        self, query: str, params: tuple[str | float | int, ...]
    ) -> list[tuple[Any, ...]]:
        """Run a read query on the store's connection, in a worker thread."""

        def run() -> list[tuple[Any, ...]]:
            return self._conn.execute(query, params).fetchall()

        async with self._lock:
            return await trio.to_thread.run_sync(run)

    async def backup(self, dest: str) -> None:
        """Copy the store to ``dest``, consistent as of one moment, while writes go on.

        Runs :func:`backup_file` in a worker thread on its own connection, so batches keep
        being written meanwhile (WAL readers do not block the writer).
        """
        await trio.to_thread.run_sync(backup_file, self.path, dest)
        logger.info("session store %s: backed up to %s", self.path, dest)

    # ------------------------------------------------------------------------------- lifetime

    async def _finish(self, *, clean: bool) -> None:
        """Refuse new changes, flush what is queued and, if ``clean``, mark a clean shutdown."""
        self._pending.closed = True
        await self.commit()
        if clean:
            async with self._lock:
                await trio.to_thread.run_sync(
                    self._conn.execute, "UPDATE meta SET value = 1 WHERE key = 'clean'"
                )


def _history_record(row: tuple[str, str, str, str, float, float, str, int]) -> ClosedSession:
    """A history row as a :class:`ClosedSession`."""
    code, host, started_at, ended_at, ended_wall, duration_s, reason, peak = row
    return ClosedSession(
        code=code,
        host_user_id=host,
        started_at=started_at,
        ended_at=ended_at,
        ended_wall=ended_wall,
        duration_s=duration_s,
        reason=reason,
        peak_participants=peak,
    )


def backup_file(src_path: str | os.PathLike[str], dest_path: str | os.PathLike[str]) -> None:
    """Copy a session store file (also one a running server is writing) to ``dest_path``.

    Blocking. Uses SQLite's online backup on a connection of its own, in one step, so the copy
    is the database as of one committed transaction. Writes to ``dest_path + ".tmp"`` and then
    renames, so ``dest_path`` is either the old file or a whole backup.

    Raises:
        StoreError: the source is missing or not a session store, or the copy failed.
    """
    src = Path(src_path)
    dest = Path(dest_path)
    partial = dest.with_name(dest.name + ".tmp")
    if not src.is_file():
        raise StoreError(f"cannot back up the session store {src}: no such file")
    try:
        source = sqlite3.connect(f"{src.resolve().as_uri()}?mode=rw", uri=True)
        try:
            partial.unlink(missing_ok=True)
            target = sqlite3.connect(partial)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
        os.replace(partial, dest)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"cannot back up the session store {src} to {dest}: {exc}") from exc


@asynccontextmanager
async def open_sqlite_store(
    path: Path,
    *,
    durability: str = "default",
    history_retention: float = 30 * 86400,
    tail_limit: int = TAIL_LIMIT,
    wall: Callable[[], float] = time.time,
) -> AsyncIterator[SqliteStore]:
    """Open the store's file, run its writer, and on exit flush and mark a clean shutdown.

    The file is checked and migrated before this yields (in a worker thread). On a normal exit
    everything queued is committed and the file is marked clean; if the body raised, what is
    queued is still committed but the file stays marked unclean; if the body was cancelled, or
    the flush is (the server bounds it with its shutdown timeout), the last batches are lost
    but the file stays consistent: each batch is one transaction.

    Raises:
        StoreError: the file is not a readable session store (at start-up), or a write failed.
    """
    if durability not in DURABILITY:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY)}, got {durability!r}")
    conn, clean = await trio.to_thread.run_sync(
        lambda: open_database(
            path, synchronous=DURABILITY[durability], prune_before=wall() - history_retention
        )
    )
    if clean:
        logger.info("session store %s: opened", path)
    else:
        logger.warning(
            "session store %s: the previous run did not shut down cleanly;"
            " the newest changes of its sessions may be missing",
            path,
        )
    store = SqliteStore(
        path,
        conn,
        clean=clean,
        durable=durability == "strict",
        tail_limit=tail_limit,
        history_retention=history_retention,
        wall=wall,
    )
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run_writer)
            # The body's exception is raised after the nursery, not inside it, so the caller
            # sees it as it was raised rather than wrapped in an exception group.
            try:
                yield store
            except BaseException as exc:
                error = exc
            try:
                if not isinstance(error, trio.Cancelled):
                    await store._finish(clean=error is None)
            except BaseException as exc:
                error = exc
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(conn.close)
    if error is not None:
        raise error
