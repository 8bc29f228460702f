"""The session store (``store/``): memory and SQLite, on real files under ``tmp_path``.

House rules: the SQLite store runs a worker thread, so these tests use the real clock (never
``autojump_clock``), put a ``fail_after`` guard on every wait, and wait on ``commit()`` rather
than sleeping.
"""

from __future__ import annotations

import functools
import re
import shutil
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ParamSpec

import pytest
import trio
import trio.testing

from actors import (
    ClosedSession,
    SessionChange,
    SessionRecord,
    StoredParticipant,
    StoredRoom,
)
from store import (
    SCHEMA_VERSION,
    WRITE_BEHIND,
    MemoryStore,
    PendingWrites,
    SqliteStore,
    StoreError,
    backup_file,
    open_store,
)

P = ParamSpec("P")
GUARD = 10.0  # seconds of real time: the longest any one step may take before the test fails
DAY = 86400.0  # seconds


def record(code: str, seq: int, **changes: object) -> SessionRecord:
    """A session record with two seats and a room, as of event ``seq``."""
    fields: dict[str, object] = {
        "code": code,
        "epoch": "e1",
        "host_user_id": "u-host",
        "host_id": "p-host",
        "status": "active",
        "started_at": "2026-11-23T16:00:00Z",
        "created_wall": 1000.0,
        "last_activity_wall": 1000.0 + seq,
        "saved_wall": 1000.0 + seq,
        "host_deadline_wall": None,
        "participants": [
            StoredParticipant(
                id="p-host",
                user_id="u-host",
                name="Ada",
                role="host",
                token_hash="h1",
                joined_seq=0,
            ),
            StoredParticipant(
                id="p-1",
                user_id="u-1",
                name="Bo",
                role="participant",
                token_hash="h2",
                joined_seq=1,
                meta={"avatar": "b"},
            ),
        ],
        "rooms": [StoredRoom(name="poll", kind="poll", members=["p-1"], meta={"q": 1})],
        "state": {"slide": seq, "nested": {"list": [1, 2.5, "x", None]}},
        "version": seq,
        "seq": seq,
        "peak_participants": 2,
    }
    fields.update(changes)
    return SessionRecord(**fields)  # type: ignore[arg-type]


def change(code: str, first: int, last: int) -> SessionChange:
    """The change of session ``code`` publishing events ``first..last``."""
    events = [
        (seq, f'{{"type":"e","code":"{code}","seq":{seq}}}') for seq in range(first, last + 1)
    ]
    return SessionChange(record=record(code, last), events=events)


def closed(code: str, ended_wall: float) -> ClosedSession:
    """A history record for ``code``."""
    return ClosedSession(
        code=code,
        host_user_id="u-host",
        started_at="2026-11-23T16:00:00Z",
        ended_at="2026-11-23T17:00:00Z",
        ended_wall=ended_wall,
        duration_s=3600.0,
        reason="manual_stop",
        peak_participants=7,
    )


class Wall:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The store's file."""
    return tmp_path / "sessions.db"


def guarded(test: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """Fail a test that hangs rather than hanging the suite."""

    @functools.wraps(test)
    async def run(*args: P.args, **kwargs: P.kwargs) -> None:
        with trio.fail_after(GUARD):
            await test(*args, **kwargs)

    return run


def url(path: Path) -> str:
    """The store url of a file."""
    return f"sqlite:{path}"


def sqlite_store(store: object) -> SqliteStore:
    """The store as the SQLite implementation (for its private connection)."""
    assert isinstance(store, SqliteStore)
    return store


# ----------------------------------------------------------------------------------- memory


@guarded
async def test_memory_store_keeps_nothing() -> None:
    """The memory store discards changes and loads nothing, clean."""
    async with open_store("memory") as store:
        assert isinstance(store, MemoryStore)
        store.save(change("AAAAA", 1, 3))
        store.close(closed("AAAAA", 5.0))
        await store.commit()
        loaded = await store.load()
        assert loaded.sessions == [] and loaded.clean
        assert await store.history(limit=10, before=None) == []
        assert await store.closed_session("AAAAA") is None
        assert await store.tail("AAAAA") == []
        assert not store.durable


@guarded
async def test_unknown_url_is_refused() -> None:
    """A store url must be memory or sqlite:PATH."""
    with pytest.raises(
        ValueError, match=r"^store url must be 'memory' or 'sqlite:PATH', got 'x:y'$"
    ):
        async with open_store("x:y"):
            pass  # pragma: no cover


@guarded
async def test_unknown_durability_is_refused(db: Path) -> None:
    """Durability is default or strict."""
    with pytest.raises(ValueError, match=r"^durability must be one of default, strict, got 'x'$"):
        async with open_store(url(db), durability="x"):
            pass  # pragma: no cover


# ---------------------------------------------------------------------------------- sqlite


@guarded
async def test_round_trip(db: Path) -> None:
    """Reopened, the store loads each session's last record and its whole tail, in order."""
    async with open_store(url(db)) as store:
        assert (await store.load()).sessions == []
        store.save(change("AAAAA", 1, 3))
        store.save(change("BBBBB", 1, 1))
        await store.commit()
        store.save(change("AAAAA", 4, 5))
        await store.commit()
        store.save(change("AAAAA", 6, 6))
    async with open_store(url(db)) as store:
        loaded = await store.load()
    assert loaded.clean
    by_code = {s.record.code: s for s in loaded.sessions}
    assert set(by_code) == {"AAAAA", "BBBBB"}
    assert by_code["AAAAA"].record == record("AAAAA", 6)
    assert by_code["AAAAA"].events == change("AAAAA", 1, 6).events
    assert by_code["BBBBB"].record == record("BBBBB", 1)
    assert by_code["BBBBB"].events == change("BBBBB", 1, 1).events


@guarded
async def test_load_without_tails_then_one_tail(db: Path) -> None:
    """load(tails=False) brings records only; tail(code) reads one session's events."""
    async with open_store(url(db)) as store:
        store.save(change("AAAAA", 1, 3))
        store.save(change("BBBBB", 1, 2))
    async with open_store(url(db)) as store:
        loaded = await store.load(tails=False)
        assert [(s.record, s.events) for s in loaded.sessions] == [
            (record("AAAAA", 3), []),
            (record("BBBBB", 2), []),
        ]
        assert await store.tail("AAAAA") == change("AAAAA", 1, 3).events
        assert await store.tail("ZZZZZ") == []


@guarded
async def test_saves_of_one_session_coalesce_into_one_batch(db: Path) -> None:
    """A hundred saves of one session within the window are one batch of one session."""
    async with open_store(url(db)) as store:
        for seq in range(1, 101):
            store.save(change("AAAAA", seq, seq))
        assert store.statistics().queued == 1
        await store.commit()
        stats = store.statistics()
        assert (stats.batches_written, stats.changes_written, stats.last_batch_size) == (1, 100, 1)
        assert stats.max_queued == 1 and stats.queued == 0
        loaded = await store.load()
    assert [s.record.seq for s in loaded.sessions] == [100]
    assert loaded.sessions[0].events == change("AAAAA", 1, 100).events


@guarded
async def test_sessions_are_batched_together(db: Path) -> None:
    """Changes of many sessions queued together are written in one transaction."""
    codes = [f"S{n:04d}" for n in range(50)]
    async with open_store(url(db)) as store:
        for code in codes:
            store.save(change(code, 1, 2))
        store.close(closed("ZZZZZ", 5.0))
        await store.commit()
        stats = store.statistics()
        assert (stats.batches_written, stats.changes_written, stats.last_batch_size) == (1, 51, 51)
        assert stats.max_queued == 51
        assert sorted(s.record.code for s in (await store.load()).sessions) == codes


@guarded
async def test_write_behind_flushes_without_commit(db: Path) -> None:
    """Without a commit, a change is written WRITE_BEHIND after it was queued."""
    async with open_store(url(db)) as store:
        sqlite = sqlite_store(store)
        store.save(change("AAAAA", 1, 1))
        await sqlite._pending.next_written()
        stats = store.statistics()
        assert stats.batches_written == 1
        assert WRITE_BEHIND <= stats.last_flush_latency < GUARD
        assert stats.last_write_duration <= stats.last_flush_latency


@guarded
async def test_commit_with_nothing_queued_returns(db: Path) -> None:
    """commit() returns at once when nothing is queued, and writes no batch."""
    async with open_store(url(db)) as store:
        await store.commit()
        assert store.statistics().batches_written == 0


@guarded
async def test_tail_is_bounded(db: Path) -> None:
    """At most tail_limit events are kept per session, whether queued or written."""
    async with open_store(url(db), tail_limit=10) as store:
        store.save(change("AAAAA", 1, 8))
        await store.commit()
        store.save(change("AAAAA", 9, 12))
        await store.commit()
        store.save(change("AAAAA", 13, 20))
        store.save(change("AAAAA", 21, 25))  # coalesced: 13 queued events trimmed to 10
        await store.commit()
        (session,) = (await store.load()).sessions
        assert session.events == change("AAAAA", 16, 25).events
        (count,) = sqlite_store(store)._conn.execute("SELECT count(*) FROM events").fetchone()
        assert count == 10


@guarded
async def test_close_moves_a_session_to_history(db: Path) -> None:
    """close() deletes a session and its tail and keeps a history row."""
    async with open_store(url(db), wall=Wall(100 * DAY)) as store:
        store.save(change("AAAAA", 1, 3))
        store.save(change("BBBBB", 1, 3))
        await store.commit()
        store.close(closed("AAAAA", 100 * DAY - 10))
        store.save(change("CCCCC", 1, 1))
        store.close(closed("CCCCC", 100 * DAY - 5))  # saved and closed within one batch
        await store.commit()
        loaded = await store.load()
        assert [s.record.code for s in loaded.sessions] == ["BBBBB"]
        assert await store.closed_session("AAAAA") == closed("AAAAA", 100 * DAY - 10)
        assert await store.closed_session("BBBBB") is None
        history = await store.history(limit=10, before=None)
        assert history == [closed("CCCCC", 100 * DAY - 5), closed("AAAAA", 100 * DAY - 10)]
        assert await store.history(limit=10, before=100 * DAY - 6) == [history[1]]
        assert await store.history(limit=1, before=None) == [history[0]]
        (count,) = sqlite_store(store)._conn.execute("SELECT count(*) FROM events").fetchone()
        assert count == 3


@guarded
async def test_a_code_reused_after_close_is_a_new_session(db: Path) -> None:
    """A save after a close of the same code in one batch starts the new session afresh."""
    async with open_store(url(db)) as store:
        store.save(change("AAAAA", 1, 5))
        store.close(closed("AAAAA", 5.0))
        store.save(change("AAAAA", 1, 2))
        await store.commit()
        (session,) = (await store.load()).sessions
        assert session.events == change("AAAAA", 1, 2).events
        assert await store.closed_session("AAAAA") == closed("AAAAA", 5.0)


@guarded
async def test_history_older_than_retention_is_deleted(db: Path) -> None:
    """History rows older than the retention go on open, and at most once a minute after."""
    wall = Wall(100 * DAY)
    async with open_store(url(db), wall=wall, history_retention=DAY) as store:
        store.close(closed("OLD01", 98 * DAY))
        store.close(closed("NEW01", 100 * DAY))
        await store.commit()  # this batch does not prune: open_database just did
        assert len(await store.history(limit=10, before=None)) == 2
        wall.now += 30  # less than a minute since the last pass: not yet
        store.close(closed("NEW02", wall.now))
        await store.commit()
        assert len(await store.history(limit=10, before=None)) == 3
        wall.now += 31
        store.close(closed("NEW03", wall.now))
        await store.commit()
        codes = [c.code for c in await store.history(limit=10, before=None)]
        assert codes == ["NEW03", "NEW02", "NEW01"]
    wall.now += 2 * DAY
    async with open_store(url(db), wall=wall, history_retention=DAY) as store:
        assert await store.history(limit=10, before=None) == []


@guarded
async def test_clean_shutdown_is_recorded(db: Path) -> None:
    """A store whose block exited normally is clean on the next open."""
    async with open_store(url(db)) as store:
        assert (await store.load()).clean  # a new file lost nothing
        store.save(change("AAAAA", 1, 1))
    async with open_store(url(db)) as store:
        assert (await store.load()).clean


@guarded
async def test_a_crash_leaves_the_store_unclean(db: Path, tmp_path: Path) -> None:
    """A copy of a store taken while it runs (as a crash leaves it) loads, marked unclean."""
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    async with open_store(url(db)) as store:
        store.save(change("AAAAA", 1, 4))
        await store.commit()
        for suffix in ("", "-wal"):
            shutil.copyfile(f"{db}{suffix}", crashed / f"sessions.db{suffix}")
    async with open_store(url(crashed / "sessions.db")) as store:
        loaded = await store.load()
    assert not loaded.clean
    assert [(s.record, s.events) for s in loaded.sessions] == [
        (record("AAAAA", 4), change("AAAAA", 1, 4).events)
    ]


@guarded
async def test_an_error_in_the_block_flushes_but_stays_unclean(db: Path) -> None:
    """When the block raises, queued changes are still written, the run is not clean, and the
    caller gets the block's own exception."""
    with pytest.raises(KeyError, match=r"^'boom'$"):
        async with open_store(url(db)) as store:
            store.save(change("AAAAA", 1, 2))
            raise KeyError("boom")
    async with open_store(url(db)) as store:
        loaded = await store.load()
    assert not loaded.clean
    assert [s.record.seq for s in loaded.sessions] == [2]


@guarded
async def test_a_cancelled_exit_leaves_the_file_consistent(db: Path) -> None:
    """Cancelled while flushing on exit, the store keeps whole batches and stays unclean."""
    codes = [f"S{n:04d}" for n in range(100)]
    with trio.CancelScope() as scope:
        async with open_store(url(db)) as store:
            store.save(change("FIRST", 1, 1))
            await store.commit()
            for code in codes:
                store.save(change(code, 1, 3))
            scope.cancel()
    assert scope.cancelled_caught
    async with open_store(url(db)) as store:
        loaded = await store.load()
    assert not loaded.clean
    stored = sorted(s.record.code for s in loaded.sessions)
    assert stored in (["FIRST"], sorted([*codes, "FIRST"]))  # the last batch: all or nothing


@guarded
async def test_save_after_exit_is_refused(db: Path) -> None:
    """A store whose block has ended takes no more changes."""
    async with open_store(url(db)) as store:
        pass
    with pytest.raises(trio.ClosedResourceError, match=r"^the session store is closed$"):
        store.save(change("AAAAA", 1, 1))


@pytest.mark.parametrize(
    ("durability", "synchronous", "durable"), [("default", 1, False), ("strict", 2, True)]
)
@guarded
async def test_durability_sets_synchronous(
    db: Path, durability: str, synchronous: int, durable: bool
) -> None:
    """default runs synchronous=NORMAL (1), strict synchronous=FULL (2); both in WAL mode."""
    async with open_store(url(db), durability=durability) as store:
        conn = sqlite_store(store)._conn
        assert conn.execute("PRAGMA synchronous").fetchone() == (synchronous,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert store.durable is durable


# ----------------------------------------------------------------------- bad files, schema


def write_garbage(path: Path) -> None:
    """Fill a file with bytes that are not a database."""
    path.write_bytes(bytes(range(256)) * 64)


def damage_middle(path: Path) -> None:
    """Overwrite 16 KiB in the middle of a file (of more than 64 KiB) with garbage."""
    size = path.stat().st_size
    assert size > 64 * 1024
    with path.open("r+b") as file:
        file.seek(size // 2)
        file.write(bytes(range(256)) * 64)


def truncate_to_half(path: Path) -> None:
    """Cut a file (of more than 64 KiB) to half its size."""
    size = path.stat().st_size
    assert size > 64 * 1024
    with path.open("r+b") as file:
        file.truncate(size // 2)


@guarded
async def test_a_file_of_garbage_is_refused(db: Path) -> None:
    """A file that is not a database is refused at start-up, naming the file."""
    write_garbage(db)
    with pytest.raises(
        StoreError,
        match=rf"^cannot open the session store {re.escape(str(db))}: file is not a database$",
    ):
        async with open_store(url(db)):
            pass  # pragma: no cover


@guarded
async def test_a_truncated_database_is_refused(db: Path) -> None:
    """A database cut short is refused at start-up, before anything is loaded."""
    async with open_store(url(db)) as store:
        for n in range(200):
            store.save(change(f"S{n:04d}", 1, 20))
    truncate_to_half(db)
    with pytest.raises(
        StoreError, match=rf"^cannot open the session store {re.escape(str(db))}: .+$"
    ):
        async with open_store(url(db)):
            pass  # pragma: no cover


@guarded
async def test_a_damaged_page_is_refused(db: Path) -> None:
    """Damaged pages are refused at start-up, by open or by load, and nothing is returned."""
    async with open_store(url(db)) as store:
        for n in range(200):
            store.save(change(f"S{n:04d}", 1, 20))
    damage_middle(db)
    with pytest.raises(
        StoreError, match=rf"^cannot (open|load) the session store {re.escape(str(db))}: .+$"
    ):
        async with open_store(url(db)) as store:
            await store.load()


@guarded
async def test_a_directory_is_refused(tmp_path: Path) -> None:
    """A path that is a directory is refused at start-up."""
    with pytest.raises(
        StoreError,
        match=rf"^cannot open the session store {re.escape(str(tmp_path))}: it is a directory$",
    ):
        async with open_store(url(tmp_path)):
            pass  # pragma: no cover


@guarded
async def test_a_newer_schema_is_refused(db: Path) -> None:
    """A file written by a newer version is refused rather than misread."""
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(
        StoreError,
        match=rf"^cannot open the session store {re.escape(str(db))}: schema version {SCHEMA_VERSION + 1} is newer than this server's {SCHEMA_VERSION}$",
    ):
        async with open_store(url(db)):
            pass  # pragma: no cover


# The layout before schema version 1: no peak_participants in the history, no clean flag.
V0_LAYOUT = (
    "CREATE TABLE sessions (code TEXT PRIMARY KEY, seq INTEGER NOT NULL, record BLOB NOT NULL)",
    "CREATE TABLE events (code TEXT NOT NULL, seq INTEGER NOT NULL, frame TEXT NOT NULL,"
    " PRIMARY KEY (code, seq)) WITHOUT ROWID",
    "CREATE TABLE history (code TEXT NOT NULL, host_user_id TEXT NOT NULL,"
    " started_at TEXT NOT NULL, ended_at TEXT NOT NULL, ended_wall REAL NOT NULL,"
    " duration_s REAL NOT NULL, reason TEXT NOT NULL)",
)


@guarded
async def test_a_version_0_file_is_migrated(db: Path) -> None:
    """A file with the version-0 layout is migrated on open and keeps its data."""
    conn = sqlite3.connect(db)
    for statement in V0_LAYOUT:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO history VALUES ('OLD01', 'u-host', 'a', 'b', ?, 60.0, 'idle_timeout')",
        (100 * DAY,),
    )
    conn.commit()
    conn.close()
    async with open_store(url(db), wall=Wall(100 * DAY)) as store:
        conn = sqlite_store(store)._conn
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        loaded = await store.load()
        assert loaded.sessions == [] and not loaded.clean  # version 0 kept no clean flag
        (old,) = await store.history(limit=10, before=None)
        assert (old.code, old.reason, old.peak_participants) == ("OLD01", "idle_timeout", 0)
        store.save(change("AAAAA", 1, 1))
    async with open_store(url(db), wall=Wall(100 * DAY)) as store:
        loaded = await store.load()
        assert loaded.clean and [s.record.code for s in loaded.sessions] == ["AAAAA"]


# ------------------------------------------------------------------------------------ backup


def names(directory: Path) -> list[str]:
    """The names of the files in a directory."""
    return sorted(path.name for path in directory.iterdir())


@guarded
async def test_backup_while_saving_is_consistent(db: Path, tmp_path: Path) -> None:
    """A backup taken while another task keeps saving loads cleanly and consistently."""
    copy = tmp_path / "backup.db"
    async with open_store(url(db)) as store:
        sqlite = sqlite_store(store)
        for n in range(100):
            store.save(change(f"S{n:04d}", 1, 10))
        await store.commit()
        backed_up = trio.Event()

        async def keep_saving() -> None:
            seq = 10
            while not backed_up.is_set():
                for n in range(100):
                    store.save(change(f"S{n:04d}", seq + 1, seq + 5))
                seq += 5
                await store.commit()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_saving)
            await sqlite.backup(str(copy))
            backed_up.set()
        assert store.statistics().batches_written >= 2
    assert not [name for name in names(tmp_path) if name.startswith("backup.db.tmp")]
    async with open_store(url(copy)) as restored:
        loaded = await restored.load()
    assert len(loaded.sessions) == 100
    for session in loaded.sessions:
        seqs = [seq for seq, _ in session.events]
        assert seqs == list(range(1, session.record.seq + 1))  # the tail ends at the record


@guarded
async def test_backup_file_of_a_missing_file_fails(tmp_path: Path) -> None:
    """backup_file names a source that does not exist."""
    missing = tmp_path / "missing.db"
    with pytest.raises(
        StoreError,
        match=rf"^cannot back up the session store {re.escape(str(missing))}: no such file$",
    ):
        backup_file(missing, tmp_path / "copy.db")


async def test_a_batch_put_back_goes_ahead_of_what_was_queued_since() -> None:
    """A batch that could not be written (the cluster's Redis was away) is queued again in
    front of the newer changes: the newest record wins, the events stay in order, and a commit
    waits until both are written."""
    pending = PendingWrites(tail_limit=10)
    pending.save(SessionChange(record=record("AAAA", 1), events=[(1, "e1")]))
    first = pending.take()
    pending.save(SessionChange(record=record("AAAA", 2), events=[(2, "e2")]))
    pending.put_back(first, first.sessions)
    entry = pending.sessions["AAAA"]
    assert entry.record is not None and entry.record.seq == 2
    assert entry.events == [(1, "e1"), (2, "e2")]
    committed = False

    async def commit() -> None:
        nonlocal committed
        await pending.commit()
        committed = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit)
        await trio.testing.wait_all_tasks_blocked()
        assert not committed  # the put-back batch was never written
        pending.written(pending.take())
    assert committed and not pending.sessions


async def test_a_close_after_a_put_back_batch_ends_the_session_after_its_old_changes() -> None:
    """A session closed while its earlier batch failed: the retry writes the old change, then
    the close, and no record survives the close."""
    pending = PendingWrites(tail_limit=10)
    pending.save(SessionChange(record=record("BBBB", 1), events=[(1, "e1")]))
    failed = pending.take()
    closed = ClosedSession(
        code="BBBB",
        host_user_id="u-host",
        started_at="2026-11-23T16:00:00Z",
        ended_at="2026-11-23T16:10:00Z",
        ended_wall=1600.0,
        duration_s=600.0,
        reason="manual_stop",
        peak_participants=2,
    )
    pending.close(closed)
    pending.put_back(failed, failed.sessions)
    entry = pending.sessions["BBBB"]
    assert entry.closed == [closed] and entry.record is None and entry.events == []
