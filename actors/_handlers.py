"""What a session actor does for each request: one function per request type.

Each handler checks everything before it changes anything, so a refused request (a raised
``ProtocolError``) leaves the session as it was. A handler prepares its event (which may refuse
a payload that cannot be encoded), applies the change, answers, then publishes: the reply always
precedes the events its request caused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from protocol import (
    CloseRoom,
    CreateRoom,
    Empty,
    ErrorCode,
    LiveStart,
    LiveStop,
    LiveWatch,
    ProtocolError,
    ResumeReply,
    RoomClosed,
    RoomCreated,
    RoomMessage,
    RoomMessageEvent,
    RoomReply,
    SeatReply,
    SeqReply,
    SessionClose,
    SessionCreate,
    SessionJoin,
    SessionLeave,
    SessionResume,
    StatePatch,
    StateSet,
    StateUpdated,
    VersionReply,
    merge_patch,
)

from ._live import on_live_start, on_live_stop, on_live_watch
from ._state import HOST, LIVE, PARTICIPANT, Participant, Room
from ._views import room_fields, room_view

if TYPE_CHECKING:
    from ._messages import Command, Peer
    from ._session import SessionActor

logger = logging.getLogger(__name__)


def _seat_reply(
    actor: SessionActor, participant: Participant, token: str, reused: bool | None = None
) -> SeatReply:
    return SeatReply(
        **actor.snapshot_fields(),
        participant_id=participant.id,
        role=participant.role,
        resume_token=token,
        reused=reused,
    )


def _fields(code: str, participant: str, peer: Peer) -> dict[str, str]:
    """The structured fields of a log line about a seat (``--log-format json``)."""
    return {
        "session": code,
        "participant": participant,
        "connection": peer.connection_id,
        "user": peer.user_id,
    }


def on_create(actor: SessionActor, cmd: Command, req: SessionCreate) -> None:
    st = actor.state
    peer = cmd.peer
    if st.host_id is not None:  # one source of truth per host: hand back the same session
        host = st.participants[st.host_id]
        actor.seats.take(host, peer)
        cmd.seat = host.id
        actor.answer(cmd, _seat_reply(actor, host, actor.seats.rotate_token(host), reused=True))
        return
    size = actor.check_state_size(req.state) if req.state is not None else None
    host, token = actor.seats.new(peer, HOST)
    st.host_id = host.id
    actor.replace_state(req.state or {}, size)
    st.participants_can_write_state = req.participants_can_write_state
    st.allowed_users = req.allowed_users
    st.anonymous = req.anonymous
    actor.seats.connect(host, peer)
    cmd.seat = host.id
    logger.info(
        "session %s created by %s (%s)",
        st.code,
        host.id,
        peer.user_id,
        extra=_fields(st.code, host.id, peer),
    )
    actor.answer(cmd, _seat_reply(actor, host, token, reused=False))


def on_join(actor: SessionActor, cmd: Command, req: SessionJoin) -> None:
    st = actor.state
    peer = cmd.peer
    if st.kind == LIVE:
        raise ProtocolError(ErrorCode.FORBIDDEN, "a live session is watched by invitation only")
    for seat in st.participants.values():
        if seat.user_id == peer.user_id:  # same user again (another tab): one seat, new link
            actor.seats.take(seat, peer)
            cmd.seat = seat.id
            actor.answer(cmd, _seat_reply(actor, seat, actor.seats.rotate_token(seat)))
            return
    if peer.anonymous and not st.anonymous:
        raise ProtocolError(ErrorCode.FORBIDDEN, "this session does not admit anonymous users")
    if st.allowed_users is not None and peer.user_id not in st.allowed_users:
        raise ProtocolError(ErrorCode.FORBIDDEN, "you are not on this session's allow-list")
    if len(st.participants) >= actor.config.max_participants:
        raise ProtocolError(
            ErrorCode.SESSION_FULL, f"session {st.code} has {len(st.participants)} participants"
        )
    participant, token = actor.seats.new(peer, PARTICIPANT, req.meta)
    actor.seats.join(participant, peer)
    cmd.seat = participant.id
    logger.info(
        "session %s: %s joined (%s)",
        st.code,
        participant.id,
        peer.user_id,
        extra=_fields(st.code, participant.id, peer),
    )
    actor.answer(cmd, _seat_reply(actor, participant, token))


def on_resume(actor: SessionActor, cmd: Command, req: SessionResume) -> None:
    try:
        participant = actor.seats.check_token(req.token)
        _check_resumer(actor, participant, cmd.peer)
    except ProtocolError:
        actor.counters.resumes["refused"] += 1
        raise
    st = actor.state
    replay = None
    if (
        req.epoch == st.epoch
        and req.last_seq is not None
        and req.last_seq >= participant.joined_seq
    ):
        replay = actor.log.since(req.last_seq, st.seq)
    actor.seats.take(participant, cmd.peer)
    cmd.seat = participant.id
    actor.counters.resumes["snapshot" if replay is None else "replayed"] += 1
    fields: dict[str, Any] = {}
    if replay is None:
        snapshot = actor.snapshot_fields()
        fields = {
            k: snapshot[k]
            for k in ("host_id", "participants", "rooms", "started_at", "meta", "kind")
        }
    actor.answer(
        cmd,
        ResumeReply(
            participant_id=participant.id,
            role=participant.role,
            code=st.code,
            epoch=st.epoch,
            seq=st.seq,
            status=st.status,
            state=st.state,
            version=st.version,
            recovered=replay is not None,
            replayed=len(replay or ()),
            **fields,
        ),
    )
    for frame in replay or ():
        actor.send_to(cmd.peer, frame)


def _check_resumer(actor: SessionActor, seat: Participant, peer: Peer) -> None:
    """With authentication on, a resume token is not a way around it: only the seat's own user
    (any anonymous connection, for an anonymous seat) may take it back."""
    if not actor.config.auth_enabled:
        return  # development mode: identities are not verified, the token is the credential
    if peer.anonymous if seat.anonymous else peer.user_id == seat.user_id:
        return
    raise ProtocolError(ErrorCode.UNAUTHORIZED, "this seat belongs to another user")


def on_leave(actor: SessionActor, cmd: Command, req: SessionLeave) -> None:
    seat = actor.seat_of(cmd)
    actor.answer(cmd, Empty())
    if seat.role == HOST:
        actor.close("manual_stop" if actor.state.kind == LIVE else "host_left")
    else:
        actor.seats.remove(seat.id, "left")


def on_close(actor: SessionActor, cmd: Command, req: SessionClose) -> None:
    actor.host_seat_of(cmd)
    actor.answer(cmd, Empty())
    actor.close("manual_stop")


def on_create_room(actor: SessionActor, cmd: Command, req: CreateRoom) -> None:
    actor.host_seat_of(cmd)
    rooms = actor.state.rooms
    room = rooms.get(req.room)
    if room is not None:  # idempotent: the room as it is
        actor.answer(cmd, RoomReply(**room_fields(room_view(room)), created=False))
        return
    if len(rooms) >= actor.config.max_rooms:
        raise ProtocolError(ErrorCode.ROOM_LIMIT, f"at most {actor.config.max_rooms} rooms")
    room = Room(
        name=req.room, kind=req.kind, members=dict.fromkeys(actor.state.participants), meta=req.meta
    )
    view = room_view(room)
    frame = actor.prepare(
        RoomCreated, room=room.name, kind=room.kind, members=view.members, meta=room.meta
    )
    rooms[room.name] = room
    actor.answer(cmd, RoomReply(**room_fields(view), created=True))
    actor.publish(frame)


def on_close_room(actor: SessionActor, cmd: Command, req: CloseRoom) -> None:
    actor.host_seat_of(cmd)
    if req.room not in actor.state.rooms:
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no room {req.room!r}")
    frame = actor.prepare(RoomClosed, room=req.room)
    del actor.state.rooms[req.room]
    actor.answer(cmd, Empty())
    actor.publish(frame)


def on_room_message(actor: SessionActor, cmd: Command, req: RoomMessage) -> None:
    seat = actor.seat_of(cmd)
    room = actor.state.rooms.get(req.room)
    if room is None:
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no room {req.room!r}")
    if seat.id not in room.members:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"not a member of room {req.room!r}")
    frame = actor.prepare(RoomMessageEvent, room=req.room, sender=seat.id, data=req.data)
    # The sender learns the seq of its own message from the reply, not from an event.
    actor.answer(cmd, SeqReply(seq=actor.state.seq + 1))
    actor.publish(frame, exclude=seat.id)


def on_state_set(actor: SessionActor, cmd: Command, req: StateSet) -> None:
    seat = _check_write(actor, cmd, req.expected_version)
    _commit_state(actor, cmd, seat, req.state, state=req.state)


def on_state_patch(actor: SessionActor, cmd: Command, req: StatePatch) -> None:
    seat = _check_write(actor, cmd, req.expected_version)
    _commit_state(actor, cmd, seat, merge_patch(actor.state.state, req.patch), patch=req.patch)


def _check_write(actor: SessionActor, cmd: Command, expected: int | None) -> Participant:
    seat = actor.seat_of(cmd)
    st = actor.state
    if seat.role != HOST and not st.participants_can_write_state:
        raise ProtocolError(ErrorCode.FORBIDDEN, "only the host may change the state")
    if expected is not None and expected != st.version:
        raise ProtocolError(
            ErrorCode.CONFLICT,
            f"expected version {expected}, state is at version {st.version}",
            version=st.version,
        )
    return seat


def _commit_state(
    actor: SessionActor, cmd: Command, seat: Participant, new: dict[str, Any], **change: Any
) -> None:
    size = actor.check_state_size(new)
    st = actor.state
    frame = actor.prepare(StateUpdated, version=st.version + 1, by=seat.id, **change)
    actor.replace_state(new, size)
    st.version += 1
    actor.answer(cmd, VersionReply(version=st.version))
    actor.publish(frame)


Handler = Callable[["SessionActor", "Command", Any], None]

HANDLERS: dict[type, Handler] = {
    RoomMessage: on_room_message,  # the most frequent first: dict order does not matter, readers do
    StatePatch: on_state_patch,
    StateSet: on_state_set,
    SessionCreate: on_create,
    SessionJoin: on_join,
    SessionResume: on_resume,
    SessionLeave: on_leave,
    SessionClose: on_close,
    CreateRoom: on_create_room,
    CloseRoom: on_close_room,
    LiveStart: on_live_start,
    LiveWatch: on_live_watch,
    LiveStop: on_live_stop,
}
"""The handler of each request type a session actor serves."""
