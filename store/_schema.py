"""The SQLite file: its schema, migrations, and opening it (blocking: call from a thread).

Schema version 2 (``PRAGMA user_version``)::

    sessions  (code PRIMARY KEY, seq, record)   latest SessionRecord per live session, JSON
    events    (code, seq, frame)                 its event tail, PRIMARY KEY (code, seq)
    history   (code, host_user_id, started_at, ended_at, ended_wall, duration_s, reason,
               peak_participants)                one row per closed session
    meta      (key PRIMARY KEY, value)           'clean': 1 once a run shut down cleanly
    relations (ward, guardian, created_at)       guardians each ward accepted,
                                                 PRIMARY KEY (ward, guardian), also by guardian

Version 0 is the layout before the history kept ``peak_participants`` and before the clean
flag; version 1 the one before ``relations``. ``MIGRATIONS[v]`` takes a file from version ``v``
to ``v + 1``.

Two connections use the file: the session store's (:func:`open_database`, the only one that
touches the clean flag and the history) and the relations' (:func:`open_relations_database`,
also from the ``relations`` command while a server runs). Whichever opens an older file first
migrates it, in one ``BEGIN IMMEDIATE`` transaction, so the other finds it up to date.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from ._api import StoreError

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 2
WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024  # bytes the write-ahead log keeps after a checkpoint
BUSY_TIMEOUT: Final = 5.0  # seconds a connection waits for the other one's write to finish

# Clustered on (ward, guardian), with an index the other way: both questions are range scans.
_RELATIONS: Final = (
    "CREATE TABLE relations (ward TEXT NOT NULL, guardian TEXT NOT NULL,"
    " created_at TEXT NOT NULL, PRIMARY KEY (ward, guardian)) WITHOUT ROWID",
    "CREATE INDEX relations_by_guardian ON relations (guardian, ward)",
)

# The layout version 1 created, statement for statement (the store before relations).
V1_LAYOUT: Final = (
    "CREATE TABLE sessions (code TEXT PRIMARY KEY, seq INTEGER NOT NULL, record BLOB NOT NULL)",
    # Clustered on (code, seq): a session's tail is contiguous, so loading it in order is a
    # scan and trimming it is a range delete.
    "CREATE TABLE events (code TEXT NOT NULL, seq INTEGER NOT NULL, frame TEXT NOT NULL,"
    " PRIMARY KEY (code, seq)) WITHOUT ROWID",
    "CREATE TABLE history (code TEXT NOT NULL, host_user_id TEXT NOT NULL,"
    " started_at TEXT NOT NULL, ended_at TEXT NOT NULL, ended_wall REAL NOT NULL,"
    " duration_s REAL NOT NULL, reason TEXT NOT NULL,"
    " peak_participants INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX history_by_end ON history (ended_wall)",
    "CREATE INDEX history_by_code ON history (code, ended_wall)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta (key, value) VALUES ('clean', 1)",
)

# A new file gets the current layout in one step.
_CREATE: Final = (*V1_LAYOUT, *_RELATIONS)

# MIGRATIONS[v]: the statements that take a file from version v to v + 1, run in one
# transaction with the version bump.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        "ALTER TABLE history ADD COLUMN peak_participants INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX history_by_end ON history (ended_wall)",
        "CREATE INDEX history_by_code ON history (code, ended_wall)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        # A version-0 run left no clean flag: assume the worst (sessions get a new epoch).
        "INSERT INTO meta (key, value) VALUES ('clean', 0)",
    ),
    _RELATIONS,
)
assert len(MIGRATIONS) == SCHEMA_VERSION


def open_database(
    path: Path, *, synchronous: str, prune_before: float
) -> tuple[sqlite3.Connection, bool]:
    """Open, check and migrate the store's file; mark it in use (not clean).

    Creates the file if it does not exist. Returns the connection (autocommit: the caller
    issues BEGIN/COMMIT) and whether the previous run shut down cleanly.

    Raises:
        StoreError: the file is not a readable session store; nothing was loaded.
    """
    conn = _connect(path)
    with _closed_on_error(conn, path):
        clean = _prepare(conn, path, synchronous=synchronous, prune_before=prune_before)
    return conn, clean


def open_relations_database(path: Path) -> sqlite3.Connection:
    """Open the store's file for its ``relations`` table (``synchronous=FULL``).

    Creates the file, or brings its schema up to date, like :func:`open_database`, but leaves
    the clean flag and the history alone and checks no pages: it may run beside a server using
    the same file, or while none does, without changing what the server's next start sees.

    Raises:
        StoreError: the file is not a readable session store.
    """
    conn = _connect(path)
    with _closed_on_error(conn, path):
        _set_pragmas(conn, path, synchronous="FULL")
        with write_transaction(conn):
            _migrate(conn, path)
    return conn


@contextmanager
def _closed_on_error(conn: sqlite3.Connection, path: Path) -> Iterator[None]:
    """Close ``conn`` if the block fails; an SQLite error becomes a :class:`StoreError`."""
    try:
        yield
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open the session store {path}: {exc}") from None
    except BaseException:
        conn.close()
        raise


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to the file (autocommit: the caller issues BEGIN/COMMIT)."""
    if path.is_dir():
        raise StoreError(f"cannot open the session store {path}: it is a directory")
    _check_size(path)
    try:
        return sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the session store {path}: {exc}") from None


def _prepare(
    conn: sqlite3.Connection, path: Path, *, synchronous: str, prune_before: float
) -> bool:
    """Set the pragmas, check the file, bring its schema up to date; return the clean flag."""
    _set_pragmas(conn, path, synchronous=synchronous)
    with write_transaction(conn):
        _migrate(conn, path)
        (clean,) = conn.execute("SELECT value FROM meta WHERE key = 'clean'").fetchone()
        if not clean:
            # After a crash, damage is likeliest: check every page (about 1 s per 400 MB here)
            # so a damaged file is refused now rather than found later. After a clean shutdown
            # the size check above and load(), which reads every session and event, suffice.
            _check_pages(conn, path)
        conn.execute("UPDATE meta SET value = 0 WHERE key = 'clean'")
        conn.execute("DELETE FROM history WHERE ended_wall < ?", (prune_before,))
    return bool(clean)


def _set_pragmas(conn: sqlite3.Connection, path: Path, *, synchronous: str) -> None:
    """WAL, the durability asked for, and a bounded log."""
    (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
    if mode != "wal":
        logger.warning("session store %s: WAL mode unavailable, journal mode is %s", path, mode)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    # A checkpoint truncates the log back to this size: a burst does not leave a huge file.
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create the layout in an empty file, or migrate an older one (inside a transaction).

    Raises:
        StoreError: the file was written by a newer schema.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"cannot open the session store {path}: schema version {version} is newer than"
            f" this server's {SCHEMA_VERSION}"
        )
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    if tables == 0:
        _run(conn, _CREATE)
    else:
        for step in range(version, SCHEMA_VERSION):
            logger.info("session store %s: migrating schema %d -> %d", path, step, step + 1)
            _run(conn, MIGRATIONS[step])
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _check_size(path: Path) -> None:
    """Refuse a file shorter than its header says (a copy or a disk cut short).

    Only when no write-ahead log is left beside it: pages still in the log may legitimately
    be missing from the file.
    """
    wal = path.with_name(path.name + "-wal")
    if not path.exists() or (wal.exists() and wal.stat().st_size > 0):
        return
    with path.open("rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return  # sqlite3 names what is wrong with it
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96]  # the header's page count is current
    size = path.stat().st_size
    if valid and size < pages * page_size:
        raise StoreError(
            f"cannot open the session store {path}: truncated, {size} of {pages * page_size} bytes"
        )


def _check_pages(conn: sqlite3.Connection, path: Path) -> None:
    """Read every page; refuse the file if any is damaged."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise StoreError(f"cannot open the session store {path}: {'; '.join(problems)}")


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back if the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _run(conn: sqlite3.Connection, statements: tuple[str, ...]) -> None:
    """Execute statements one by one (``executescript`` would commit the open transaction)."""
    for statement in statements:
        conn.execute(statement)
