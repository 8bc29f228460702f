"""A session actor to and from what the store keeps: its record, and its restoration."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ._persistence import SessionRecord, StoredParticipant, StoredRoom, StoredSession
from ._state import Participant, Room

if TYPE_CHECKING:
    from ._session import SessionActor


def record_of(actor: SessionActor) -> SessionRecord:
    """The session as the store keeps it (resume tokens only as hashes)."""
    st = actor.state
    now, wall = trio.current_time(), actor.env.wall()
    host_deadline = actor.seats.host_deadline
    return SessionRecord(
        code=st.code,
        epoch=st.epoch,
        host_user_id=st.host_user_id,
        host_id=st.host_id,
        status=st.status,
        started_at=st.started_at,
        created_wall=actor.created_wall,
        last_activity_wall=wall - (now - actor.idle_since),
        saved_wall=wall,
        host_deadline_wall=wall + host_deadline - now if host_deadline != math.inf else None,
        participants=[
            StoredParticipant(
                id=p.id,
                user_id=p.user_id,
                name=p.name,
                role=p.role,
                token_hash=p.token_hash,
                joined_seq=p.joined_seq,
                meta=p.meta,
                anonymous=p.anonymous,
            )
            for p in st.participants.values()
        ],
        rooms=[
            StoredRoom(name=r.name, kind=r.kind, members=list(r.members), meta=r.meta)
            for r in st.rooms.values()
        ],
        state=st.state,
        version=st.version,
        seq=st.seq,
        participants_can_write_state=st.participants_can_write_state,
        meta=st.meta,
        peak_participants=actor.peak_participants,
        kind=st.kind,
        allowed_users=st.allowed_users,
        anonymous=st.anonymous,
    )


def restore(actor: SessionActor, stored: StoredSession, *, continuous: bool) -> None:
    """Make a new ``actor`` the session brought back from the store at start-up: everyone
    away, graces starting now. Unless ``continuous`` (a clean shutdown, and a stored tail that
    reaches the record), the epoch changes, so clients fall back to a snapshot, not a replay.
    A session loaded without its tail reads it when it first has something to do."""
    record = stored.record
    st = actor.state
    st.epoch = record.epoch if continuous else actor.env.token_hex(8)
    st.started_at = record.started_at
    st.host_id = record.host_id
    st.participants = {
        p.id: Participant(
            id=p.id,
            user_id=p.user_id,
            name=p.name,
            role=p.role,
            token_hash=p.token_hash,
            joined_seq=p.joined_seq,
            meta=p.meta,
            anonymous=p.anonymous,
        )
        for p in record.participants
    }
    st.rooms = {
        r.name: Room(name=r.name, kind=r.kind, members=dict.fromkeys(r.members), meta=r.meta)
        for r in record.rooms
    }
    actor.replace_state(record.state)
    st.version = record.version
    st.seq = record.seq
    st.participants_can_write_state = record.participants_can_write_state
    st.kind = record.kind
    st.allowed_users = record.allowed_users
    st.anonymous = record.anonymous
    if continuous and stored.events:
        for seq, frame in stored.events:
            actor.log.append(seq, frame)
    elif continuous:  # loaded without its tail: read it before the first message is handled
        actor.tail_pending = True
    actor.created_wall = record.created_wall
    # duration_s counts from the session's creation, not from this start
    actor.started -= max(0.0, actor.env.wall() - record.created_wall)
    actor.peak_participants = record.peak_participants
    actor.seats.restore_away()  # not saved until something happens: a restart stays cheap
