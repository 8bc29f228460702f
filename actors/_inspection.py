"""What an operator may see of a session, built by its actor in its own task (admin API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._state import ONLINE

if TYPE_CHECKING:
    from ._session import SessionActor


@attrs.frozen(kw_only=True)
class SeatView:
    """One seat as an operator sees it. ``last_seen`` is now for a connected seat, else when
    its connection ended (or the session was restored)."""

    participant_id: str
    user_id: str
    name: str
    role: str
    presence: str  # "online" | "away"
    last_seen: str  # ISO 8601


@attrs.frozen(kw_only=True)
class SessionView:
    """One live session as an operator sees it (``GET /api/v1/sessions/{code}``)."""

    code: str
    kind: str  # "session" | "live"
    status: str  # "active" | "hibernating"
    host_user_id: str
    created_at: str  # ISO 8601
    last_activity: str  # ISO 8601: the last request, or the end of the last grace
    active_clients: int  # seats with a live connection
    participants: int  # seats, connected or in grace
    rooms: list[str]
    meta: dict[str, Any] | None
    state_version: int
    state_size: int  # bytes of the state encoded as JSON
    seq: int
    epoch: str
    seats: list[SeatView]
    user_ids: list[str]  # of every seat, for per-user lookups


def inspect(actor: SessionActor) -> SessionView:
    """The view of ``actor``'s session now. Only the actor's task calls this."""
    st = actor.state
    now = trio.current_time()
    env = actor.env
    connected = actor.seats.peers

    def wall_of(t: float) -> str:
        return env.iso(t - now)

    return SessionView(
        code=st.code,
        kind=st.kind,
        status=st.status,
        host_user_id=st.host_user_id,
        created_at=st.started_at,
        last_activity=wall_of(actor.idle_since),
        active_clients=len(connected),
        participants=len(st.participants),
        rooms=list(st.rooms),
        meta=st.meta,
        state_version=st.version,
        state_size=actor.state_size(),
        seq=st.seq,
        epoch=st.epoch,
        seats=[
            SeatView(
                participant_id=p.id,
                user_id=p.user_id,
                name=p.name,
                role=p.role,
                presence=p.presence,
                last_seen=wall_of(
                    now
                    if p.id in connected or p.presence == ONLINE
                    else actor.seats.last_seen.get(p.id, now)
                ),
            )
            for p in st.participants.values()
        ],
        user_ids=sorted({p.user_id for p in st.participants.values()}),
    )
