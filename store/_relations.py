"""Which guardians each ward has accepted (live sessions): in memory, or in the store's file.

A relation is directional: ``(ward, guardian)`` says that ``guardian`` may follow ``ward``'s
live session; it says nothing the other way. With ``sqlite:PATH`` the relations are the
``relations`` table of the session store's own file, used through a connection of their own
(WAL, ``synchronous=FULL``), so the ``relations`` command can change them while a server runs,
and a server's open :class:`RelationStore` sees the change at its next call.
"""

from __future__ import annotations

import builtins
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol, TypeVar, final

import attrs
import trio

from ._api import StoreError
from ._schema import open_relations_database

MAX_ID_LENGTH: Final = 256  # characters of a ward or guardian id (a user id)

_T = TypeVar("_T")


@attrs.frozen
class Relation:
    """``guardian`` is a guardian of ``ward`` since ``created_at`` (ISO 8601, UTC)."""

    ward: str
    guardian: str
    created_at: str


class RelationStore(Protocol):
    """Relations between user ids, as :func:`open_relations` returns them.

    Every method raises ``ValueError`` for an id that is empty or longer than
    ``MAX_ID_LENGTH``, and :class:`StoreError` when the file cannot be read or written.
    Lists are sorted by id.
    """

    async def add(self, ward: str, guardian: str) -> bool:
        """Record that ``guardian`` is a guardian of ``ward``; ``False`` if already recorded.

        Raises:
            ValueError: also when ``ward`` and ``guardian`` are the same user.
        """
        ...

    async def remove(self, ward: str, guardian: str) -> bool:
        """Forget that relation; ``False`` if it was not recorded."""
        ...

    async def guardians(self, ward: str) -> builtins.list[str]:
        """The guardians of ``ward``."""
        ...

    async def wards(self, guardian: str) -> builtins.list[str]:
        """The wards ``guardian`` is a guardian of."""
        ...

    async def list(self, ward: str | None = None) -> builtins.list[Relation]:
        """Every relation (of ``ward`` only, when given), by ward then guardian."""
        ...


def _check_id(kind: str, value: str) -> None:
    if not 0 < len(value) <= MAX_ID_LENGTH:
        raise ValueError(f"a {kind} id must be 1 to {MAX_ID_LENGTH} characters, not {len(value)}")


def _check_pair(ward: str, guardian: str, *, new: bool = False) -> None:
    _check_id("ward", ward)
    _check_id("guardian", guardian)
    if new and ward == guardian:
        raise ValueError("a ward cannot be their own guardian")


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------- memory


@final
class MemoryRelations:
    """Relations kept in memory (``--store memory``): they end with the process."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._by_ward: dict[str, dict[str, Relation]] = {}
        self._by_guardian: dict[str, set[str]] = {}

    async def add(self, ward: str, guardian: str) -> bool:
        await trio.lowlevel.checkpoint()
        _check_pair(ward, guardian, new=True)
        guardians = self._by_ward.setdefault(ward, {})
        if guardian in guardians:
            return False
        guardians[guardian] = Relation(ward, guardian, _iso(self._wall()))
        self._by_guardian.setdefault(guardian, set()).add(ward)
        return True

    async def remove(self, ward: str, guardian: str) -> bool:
        await trio.lowlevel.checkpoint()
        _check_pair(ward, guardian)
        guardians = self._by_ward.get(ward, {})
        if guardians.pop(guardian, None) is None:
            return False
        if not guardians:
            del self._by_ward[ward]
        wards = self._by_guardian[guardian]
        wards.discard(ward)
        if not wards:
            del self._by_guardian[guardian]
        return True

    async def guardians(self, ward: str) -> builtins.list[str]:
        await trio.lowlevel.checkpoint()
        _check_id("ward", ward)
        return sorted(self._by_ward.get(ward, {}))

    async def wards(self, guardian: str) -> builtins.list[str]:
        await trio.lowlevel.checkpoint()
        _check_id("guardian", guardian)
        return sorted(self._by_guardian.get(guardian, set()))

    async def list(self, ward: str | None = None) -> builtins.list[Relation]:
        await trio.lowlevel.checkpoint()
        if ward is not None:
            _check_id("ward", ward)
        wards = sorted(self._by_ward) if ward is None else [ward]
        return [
            relation
            for name in wards
            for _, relation in sorted(self._by_ward.get(name, {}).items())
        ]


# ---------------------------------------------------------------------------------- SQLite


@final
class SqliteRelations:
    """Relations in the ``relations`` table of the store's file; one call at a time, in a thread."""

    def __init__(self, path: Path, conn: sqlite3.Connection, wall: Callable[[], float]) -> None:
        self.path = path
        self._conn = conn
        self._wall = wall
        self._lock = trio.Lock()  # one user of the connection at a time

    async def add(self, ward: str, guardian: str) -> bool:
        _check_pair(ward, guardian, new=True)
        row = (ward, guardian, _iso(self._wall()))

        def insert() -> bool:
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO relations (ward, guardian, created_at) VALUES (?, ?, ?)",
                row,
            )
            return cursor.rowcount == 1

        return await self._call("write", insert)

    async def remove(self, ward: str, guardian: str) -> bool:
        _check_pair(ward, guardian)

        def delete() -> bool:
            cursor = self._conn.execute(
                "DELETE FROM relations WHERE ward = ? AND guardian = ?", (ward, guardian)
            )
            return cursor.rowcount == 1

        return await self._call("write", delete)

    async def guardians(self, ward: str) -> builtins.list[str]:
        _check_id("ward", ward)
        rows = await self._rows(
            "SELECT guardian FROM relations WHERE ward = ? ORDER BY guardian", (ward,)
        )
        return [guardian for (guardian,) in rows]

    async def wards(self, guardian: str) -> builtins.list[str]:
        _check_id("guardian", guardian)
        rows = await self._rows(
            "SELECT ward FROM relations WHERE guardian = ? ORDER BY ward", (guardian,)
        )
        return [ward for (ward,) in rows]

    async def list(self, ward: str | None = None) -> builtins.list[Relation]:
        query = "SELECT ward, guardian, created_at FROM relations"
        params: tuple[str, ...] = ()
        if ward is not None:
            _check_id("ward", ward)
            query += " WHERE ward = ?"
            params = (ward,)
        rows = await self._rows(query + " ORDER BY ward, guardian", params)
        return [Relation(*row) for row in rows]

    async def _rows(self, query: str, params: tuple[str, ...]) -> builtins.list[tuple[str, ...]]:
        return await self._call("read", lambda: self._conn.execute(query, params).fetchall())

    async def _call(self, action: str, work: Callable[[], _T]) -> _T:
        """Run ``work`` on the connection in a worker thread, alone.

        Raises:
            StoreError: SQLite failed (a locked file past the busy timeout, a full disk).
        """
        async with self._lock:
            try:
                return await trio.to_thread.run_sync(work)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot {action} the relations in {self.path}: {exc}") from exc


# ---------------------------------------------------------------------------------- opening


@asynccontextmanager
async def open_relations(
    spec: str, *, wall: Callable[[], float] = time.time
) -> AsyncIterator[RelationStore]:
    """Open the relations named by ``spec`` for the lifetime of the block.

    Args:
        spec: ``memory`` (nothing kept) or ``sqlite:PATH``, the session store's file (created
            or migrated if need be; it may be in use by a server at the same time).
        wall: the wall clock (seconds since the epoch) that dates new relations.

    Raises:
        ValueError: ``spec`` is neither.
        StoreError: the file is not a readable session store; the message names it.
    """
    if spec == "memory":
        yield MemoryRelations(wall)
        return
    if not spec.startswith("sqlite:") or spec == "sqlite:":
        raise ValueError(f"store must be memory or sqlite:PATH, not {spec!r}")
    path = Path(spec.removeprefix("sqlite:"))
    conn = await trio.to_thread.run_sync(open_relations_database, path)
    try:
        yield SqliteRelations(path, conn, wall)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(conn.close)
