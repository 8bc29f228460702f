"""The shared session store of a cluster: records and event tails in Redis, fenced writes.

The same write-behind queue as the SQLite store (``store.PendingWrites``): ``save``/``close``
only queue, the writer sends each batch as one pipeline of ``SAVE``/``CLOSE`` scripts. Each
script writes only if the session's directory entry still names this node's incarnation;
a refused write means another node took the session over, and ``on_fenced(code)`` tells the
node to stop serving it.

While Redis is unavailable, batches go back to the queue (coalesced per session, so memory
stays bounded by the sessions themselves) and are retried; ``available`` is false, which the
actors read in strict durability (see ``docs/cluster.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import cattrs.preconf.orjson
import orjson
import trio

from actors import ClosedSession, Loaded, SessionChange, SessionRecord, StoredSession
from store import Batch, PendingWrites, StoreStatistics, batch_written

from . import _keys as keys
from ._redis import REDIS_ERRORS

if TYPE_CHECKING:
    from ._membership import Membership

logger = logging.getLogger(__name__)

HISTORY_LIMIT: Final = 10_000  # closed sessions kept in the shared history list
RETRY: Final = 0.5  # seconds between two attempts at a batch while Redis is unavailable

_converter: Final = cattrs.preconf.orjson.make_converter(detailed_validation=False)


def encode_record(record: SessionRecord) -> bytes:
    return _converter.dumps(record)


def decode_record(data: bytes) -> SessionRecord:
    return _converter.loads(data, SessionRecord)


def decode_tail(entries: list[bytes]) -> list[tuple[int, str]]:
    """A stored tail (``[seq, frame]`` entries) as ``(seq, frame)`` pairs, oldest first."""
    return [(int(seq), str(frame)) for seq, frame in map(orjson.loads, entries)]


class RedisStore:
    """A :class:`store.Store` shared by the nodes of a cluster (``--cluster``)."""

    persistent = True

    def __init__(
        self,
        membership: Membership,
        *,
        durable: bool,
        tail_limit: int,
        history_retention: float,
    ) -> None:
        self.durable = durable
        self._membership = membership
        self._redis = membership.redis
        self._retention = history_retention
        self.on_fenced: Callable[[str], None] = lambda code: None  # set by the cluster
        self._pending = PendingWrites(tail_limit)
        self._stats = StoreStatistics()
        self._save = self._redis.register_script(keys.SAVE)
        self._close = self._redis.register_script(keys.CLOSE)

    @property
    def available(self) -> bool:
        return self._membership.available

    # ------------------------------------------------------------------ SessionStore

    async def load(self, *, tails: bool = True) -> Loaded:
        """Nothing: a node starts empty and takes sessions over (``_takeover.py``)."""
        await trio.lowlevel.checkpoint()
        return Loaded(sessions=[], clean=True)

    async def tail(self, code: str) -> list[tuple[int, str]]:
        return decode_tail(await self._redis.lrange(keys.tail(code), 0, -1))

    def save(self, change: SessionChange) -> None:
        self._pending.save(change)

    def close(self, closed: ClosedSession) -> None:
        self._pending.close(closed)

    async def commit(self) -> None:
        await self._pending.commit()

    def statistics(self) -> StoreStatistics:
        return self._pending.statistics(self._stats)

    async def history(self, *, limit: int, before: float | None) -> list[ClosedSession]:
        """Closed sessions of the whole cluster, newest first (at most ``HISTORY_LIMIT``)."""
        rows = await self._redis.lrange(keys.HISTORY, 0, HISTORY_LIMIT - 1)
        closed = [_converter.loads(row, ClosedSession) for row in rows]
        return [c for c in closed if before is None or c.ended_wall < before][:limit]

    async def closed_session(self, code: str) -> ClosedSession | None:
        row = await self._redis.get(keys.closed(code))
        return None if row is None else _converter.loads(row, ClosedSession)

    # ------------------------------------------------------------------ the writer

    async def run_writer(self) -> None:
        """Write batches as changes come, retrying while Redis is unavailable; forever."""
        while True:
            await self._pending.wait_batch()
            batch = self._pending.take()
            started = trio.current_time()
            try:
                fenced, orphaned = await self._write(batch)
            except REDIS_ERRORS as error:
                logger.warning("cluster store: batch not written (%s); retrying", error)
                self._pending.put_back(batch, batch.sessions)
                await trio.sleep(RETRY)
                continue
            for code in fenced:
                self.on_fenced(code)
            if orphaned:  # Redis lost them: written again once the node reclaimed them
                self._pending.put_back(batch, {code: batch.sessions[code] for code in orphaned})
                self._membership.check_lease()
                await trio.sleep(RETRY)
                continue
            self._stats = batch_written(self._stats, batch, started)
            self._pending.written(batch)

    async def flush(self) -> None:
        """Write what is queued and accept no more (a clean stop; the caller bounds the wait)."""
        self._pending.closed = True
        await self._pending.commit()

    async def _write(self, batch: Batch) -> tuple[list[str], list[str]]:
        """One pipeline for the batch; the codes whose writes were fenced off, and those whose
        directory entry is gone."""
        node, fence = self._membership.node_id, self._membership.fence
        owned = keys.owned(node, fence)
        results: list[tuple[str, Any]] = []
        async with self._redis.pipeline(transaction=True) as pipe:
            for code, entry in batch.sessions.items():
                for closed in entry.closed:
                    ended = _converter.dumps(closed)
                    args: list[str | int | bytes] = [node, fence, ended, code, HISTORY_LIMIT]
                    request: Any = self._close(
                        [
                            keys.directory(code),
                            keys.record(code),
                            keys.tail(code),
                            owned,
                            keys.HISTORY,
                            keys.closed(code),
                        ],
                        [*args, int(self._retention)],
                        client=pipe,
                    )
                    results.append((code, request))
                if entry.record is not None:
                    events = [orjson.dumps(event) for event in entry.events]
                    record = encode_record(entry.record)
                    request = self._save(
                        [keys.directory(code), keys.record(code), keys.tail(code), owned],
                        [node, fence, record, self._pending.tail_limit, code, *events],
                        client=pipe,
                    )
                    results.append((code, request))
        fenced, orphaned = [], []
        for code, request in results:
            outcome = await request
            if outcome == 0 and code not in fenced:
                fenced.append(code)
            elif outcome == 2 and code not in orphaned:
                orphaned.append(code)
        return fenced, orphaned


def stored_session(code: str, record: bytes, tail: list[bytes]) -> StoredSession:
    """A session claimed from a dead node, as :meth:`actors.Supervisor.restore` takes it."""
    stored = decode_record(record)
    if stored.code != code:
        raise ValueError(f"record of {stored.code!r} stored under {code!r}")
    return StoredSession(record=stored, events=decode_tail(tail))
