"""What a session actor hands a store, and the interface a store offers (implemented in ``store/``).

Per session, keyed by its code: a stream of changes, each the session's record as of its last
event plus the events published since the previous change (write-behind: an actor hands one
change per ``write_behind`` interval, not one per message), and, when the session ends, a compact
history record. A store never sees a raw resume token: seats carry the token's hash only.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs


@attrs.frozen(kw_only=True)
class StoredParticipant:
    """A seat as stored."""

    id: str
    user_id: str
    name: str
    role: str
    token_hash: str
    joined_seq: int
    meta: dict[str, Any] | None = None
    anonymous: bool = False


@attrs.frozen(kw_only=True)
class StoredRoom:
    """A room as stored."""

    name: str
    kind: str
    members: list[str]
    meta: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class SessionRecord:
    """Everything needed to bring a session back, as of event ``seq``.

    Wall-clock times are seconds since the Unix epoch from the server's display clock: they
    only decide, at start-up, whether a grace ran out while the server was down.
    """

    code: str
    epoch: str
    host_user_id: str
    host_id: str | None
    status: str  # "active" | "hibernating"
    started_at: str  # ISO 8601, display
    created_wall: float
    last_activity_wall: float
    saved_wall: float
    host_deadline_wall: float | None  # when a hibernating host's grace ends
    participants: list[StoredParticipant]
    rooms: list[StoredRoom]
    state: dict[str, Any]
    version: int
    seq: int
    participants_can_write_state: bool = False
    meta: dict[str, Any] | None = None
    peak_participants: int = 0
    kind: str = "session"
    allowed_users: list[str] | None = None
    anonymous: bool = False


@attrs.frozen(kw_only=True)
class SessionChange:
    """One write-behind step of a session: its record now, and the events since the last step
    (``(seq, frame)``, in order, ending at ``record.seq``)."""

    record: SessionRecord
    events: list[tuple[int, str]]


@attrs.frozen(kw_only=True)
class ClosedSession:
    """The compact record a closed session leaves (history)."""

    code: str
    host_user_id: str
    started_at: str
    ended_at: str
    ended_wall: float
    duration_s: float
    reason: str
    peak_participants: int


@attrs.frozen(kw_only=True)
class StoredSession:
    """A session as loaded at start-up: its record and its stored event tail (oldest first)."""

    record: SessionRecord
    events: list[tuple[int, str]]


@attrs.frozen(kw_only=True)
class Loaded:
    """What a store holds at start-up. ``clean`` is ``False`` when the previous run did not shut
    down cleanly, so the newest changes may be missing (sessions then get a new epoch)."""

    sessions: list[StoredSession]
    clean: bool


class SessionStore(Protocol):
    """Where sessions outlive the process. Nothing here blocks the caller's Trio thread:
    ``save`` and ``close`` only queue; a background writer commits in batches."""

    durable: bool  # every change is committed with the strongest sync the store has
    persistent: bool  # keeps anything at all (False: actors skip building records)

    @property
    def available(self) -> bool:
        """Whether it can commit now (``False``: a shared store is unreachable)."""
        ...

    async def load(self, *, tails: bool = True) -> Loaded:
        """Every stored session (start-up); without their event tails when ``tails`` is false."""
        ...

    async def tail(self, code: str) -> list[tuple[int, str]]:
        """One session's stored event tail, oldest first."""
        ...

    def save(self, change: SessionChange) -> None:
        """Queue a session's change; changes of one session are coalesced (the newest record
        wins, events accumulate) until the writer's next batch."""
        ...

    def close(self, closed: ClosedSession) -> None:
        """Queue the end of a session: forget it and keep its history record."""
        ...

    async def commit(self) -> None:
        """Return once everything queued before the call is committed (strict mode)."""
        ...


class NoStore:
    """A :class:`SessionStore` that keeps nothing (``--store memory``, tests, simulations)."""

    durable = False
    persistent = False
    available = True

    async def load(self, *, tails: bool = True) -> Loaded:
        return Loaded(sessions=[], clean=True)

    async def tail(self, code: str) -> list[tuple[int, str]]:
        return []

    def save(self, change: SessionChange) -> None:
        pass

    def close(self, closed: ClosedSession) -> None:
        pass

    async def commit(self) -> None:
        pass
