"""The session actor: one Trio task that owns a session's state and serves its inbox.

Nothing else reads or writes the state. Handlers are synchronous: the actor never awaits
anything but its inbox, so a slow client cannot slow a session down. Timers (grace periods,
idle reaping) are deadlines on Trio's clock that bound the wait on the inbox.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import trio

from protocol import (
    CloseCode,
    CloseRoom,
    CreateRoom,
    ErrorCode,
    Event,
    ParticipantAway,
    ParticipantBack,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantView,
    ProtocolError,
    RoomClosed,
    RoomCreated,
    RoomMessage,
    RoomMessageEvent,
    RoomView,
    SessionClose,
    SessionClosed,
    SessionCreate,
    SessionHibernating,
    SessionJoin,
    SessionLeave,
    SessionResume,
    SessionResumed,
    Snapshot,
    StatePatch,
    StateSet,
    StateUpdated,
    encode_event,
    unstructure,
)

from ._event_log import EventLog
from ._merge_patch import merge_patch
from ._messages import Command, InjectFault, Message, Peer, PeerGone
from ._state import (
    ACTIVE,
    AWAY,
    HIBERNATING,
    HOST,
    ONLINE,
    PARTICIPANT,
    Participant,
    Room,
    SessionState,
)

if TYPE_CHECKING:
    from ._config import Config
    from ._supervisor import SessionHandle

logger = logging.getLogger(__name__)


def wall_clock(offset: float = 0.0) -> str:
    """Wall-clock ISO 8601 time, ``offset`` seconds from now. For display fields only."""
    if not offset:
        return _now_text(time.time_ns() // 1_000_000)
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat(timespec="milliseconds")


@functools.lru_cache(maxsize=1)
def _now_text(millis: int) -> str:
    # Every event carries ``at``; under load many share a millisecond, and formatting is dear.
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@attrs.frozen
class SessionStatistics:
    """A point-in-time view of one session, for metrics and admin listings."""

    code: str
    status: str
    participants: int
    connected: int
    rooms: int
    seq: int
    version: int


class SessionActor:
    """Serves one session. Built by the supervisor, which runs :meth:`run` in its nursery."""

    def __init__(self, handle: SessionHandle, config: Config) -> None:
        self.handle = handle
        self.state = SessionState(
            code=handle.code,
            epoch=secrets.token_hex(8),
            host_user_id=handle.host_user_id,
            started_at=wall_clock(),
        )
        self._config = config
        self._log = EventLog(config.event_log_size, config.event_log_age)
        self._peers: dict[str, Peer] = {}  # participant id -> its live connection
        self._seat_deadlines: dict[str, float] = {}  # away participant id -> end of its grace
        self._host_deadline = math.inf  # end of the host's grace while hibernating
        self._started = trio.current_time()
        self._last_activity = self._started
        self._closed = False
        self._handlers: dict[type, Callable[[Command], None]] = {
            SessionCreate: self._on_create,
            SessionJoin: self._on_join,
            SessionResume: self._on_resume,
            SessionLeave: self._on_leave,
            SessionClose: self._on_close,
            CreateRoom: self._on_create_room,
            CloseRoom: self._on_close_room,
            RoomMessage: self._on_room_message,
            StateSet: self._on_state_set,
            StatePatch: self._on_state_patch,
        }

    # ---------------------------------------------------------------- the loop

    async def run(self, inbox: trio.MemoryReceiveChannel[Message]) -> None:
        """Serve the inbox until the session closes. Closes ``inbox`` on the way out.

        Whatever is still queued when the session ends is answered with ``session_closed``.
        Exceptions (a bug) propagate to the supervisor, which calls :meth:`fail`.
        """
        with inbox:
            try:
                while not self._closed:
                    with trio.move_on_at(self._next_deadline()):
                        self._handle(await inbox.receive())
                        continue
                    self._expire_timers()
            finally:
                self._drain(inbox)

    def fail(self) -> None:
        """Close the session after a crash, telling its clients (reason ``internal_error``)."""
        try:
            self._close("internal_error")
        except Exception:
            logger.exception("session %s: could not close cleanly after a crash", self.state.code)
        for peer in self._peers.values():  # whatever _close did not get to
            peer.unbind(self.handle, "internal_error")
        self._peers.clear()
        self._closed = True

    def statistics(self) -> SessionStatistics:
        """Counts for metrics and admin listings."""
        st = self.state
        return SessionStatistics(
            st.code,
            st.status,
            len(st.participants),
            len(self._peers),
            len(st.rooms),
            st.seq,
            st.version,
        )

    def _next_deadline(self) -> float:
        deadline = min(self._host_deadline, *self._seat_deadlines.values(), math.inf)
        if not self._peers:
            deadline = min(deadline, self._last_activity + self._config.idle_timeout)
        return deadline

    def _expire_timers(self) -> None:
        now = trio.current_time()
        if now >= self._host_deadline:
            self._close("host_timeout")
        elif not self._peers and now >= self._last_activity + self._config.idle_timeout:
            self._close("idle_timeout")
        else:
            for pid, deadline in list(self._seat_deadlines.items()):
                if now >= deadline:
                    self._remove(pid, "timeout")

    def _handle(self, message: Message) -> None:
        if isinstance(message, Command):
            self._handle_command(message)
        elif isinstance(message, PeerGone):
            pid = self._seat_id(message.peer)
            if pid is not None:
                self._drop(pid)
        elif isinstance(message, InjectFault):
            raise RuntimeError(f"injected fault in session {self.state.code}")

    def _handle_command(self, cmd: Command) -> None:
        self._last_activity = trio.current_time()
        try:
            self._handlers[type(cmd.request)](cmd)
        except ProtocolError as error:
            cmd.peer.reply_error(cmd.ref, error)
        except Exception:
            cmd.peer.reply_error(cmd.ref, ProtocolError(ErrorCode.INTERNAL, "internal error"))
            raise
        finally:
            if cmd.done is not None:
                cmd.done.set()

    def _drain(self, inbox: trio.MemoryReceiveChannel[Message]) -> None:
        closed = ProtocolError(ErrorCode.SESSION_CLOSED, f"session {self.state.code} has ended")
        while True:
            try:
                message = inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            if isinstance(message, Command):
                message.peer.reply_error(message.ref, closed)
                if message.done is not None:
                    message.done.set()

    # ---------------------------------------------------------------- seats

    def _seat_id(self, peer: Peer) -> str | None:
        pid = peer.participant_id
        return pid if pid is not None and self._peers.get(pid) is peer else None

    def _seat(self, cmd: Command) -> Participant:
        pid = self._seat_id(cmd.peer)
        if pid is None:
            raise ProtocolError(ErrorCode.FORBIDDEN, "not a participant of this session")
        return self.state.participants[pid]

    def _host_seat(self, cmd: Command) -> Participant:
        seat = self._seat(cmd)
        if seat.role != HOST:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"only the host may {cmd.request.TYPE}")
        return seat

    def _new_participant(self, peer: Peer, role: str) -> tuple[Participant, str]:
        secret = secrets.token_urlsafe(24)  # 192 bits
        participant = Participant(
            id="p_" + secrets.token_hex(6),
            user_id=peer.user_id,
            name=peer.name,
            role=role,
            token_hash=_hash(secret),
            joined_seq=self.state.seq,
        )
        self.state.participants[participant.id] = participant
        return participant, self._token(participant, secret)

    def _token(self, participant: Participant, secret: str) -> str:
        return f"{self.state.code}.{participant.id}.{secret}"

    def _rotate_token(self, participant: Participant) -> str:
        secret = secrets.token_urlsafe(24)
        participant.token_hash = _hash(secret)
        return self._token(participant, secret)

    def _check_token(self, token: str) -> Participant:
        # Checked before anything is touched: a bad token changes nothing (no timer, no presence).
        code, _, rest = token.partition(".")
        pid, _, secret = rest.partition(".")
        participant = self.state.participants.get(pid)
        if (
            code != self.state.code
            or participant is None
            or not hmac.compare_digest(_hash(secret), participant.token_hash)
        ):
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "invalid or expired resume token")
        return participant

    def _take_seat(self, participant: Participant, peer: Peer) -> None:
        """Bind ``peer`` to an existing seat; a different live connection on it is replaced."""
        old = self._peers.get(participant.id)
        if old is not None and old is not peer:
            old.unbind(self.handle, "replaced")
            old.close(CloseCode.REPLACED, "this seat was resumed on another connection")
        self._peers[participant.id] = peer
        peer.bind(self.handle, participant.id)
        if participant.presence == AWAY:
            participant.presence = ONLINE
            if participant.role == HOST:
                self.state.status = ACTIVE
                self._host_deadline = math.inf
                logger.info("session %s: host is back", self.state.code)
                self._emit(SessionResumed, exclude=participant.id)
            else:
                del self._seat_deadlines[participant.id]
                self._emit(ParticipantBack, exclude=participant.id, participant_id=participant.id)

    def _drop(self, pid: str) -> None:
        """The connection of ``pid`` ended without a leave: keep the seat for its grace period."""
        participant = self.state.participants[pid]
        del self._peers[pid]
        participant.presence = AWAY
        if participant.role == HOST:
            grace = self._config.host_grace
            self.state.status = HIBERNATING
            self._host_deadline = trio.current_time() + grace
            logger.info("session %s: host dropped, hibernating for %ss", self.state.code, grace)
            self._emit(SessionHibernating, until=wall_clock(grace), grace_s=grace)
        else:
            grace = self._config.participant_grace
            self._seat_deadlines[pid] = trio.current_time() + grace
            self._emit(ParticipantAway, participant_id=pid, until=wall_clock(grace))

    def _remove(self, pid: str, reason: str) -> None:
        """Give up a participant's seat for good."""
        del self.state.participants[pid]
        self._seat_deadlines.pop(pid, None)
        for room in self.state.rooms.values():
            room.members.pop(pid, None)
        peer = self._peers.pop(pid, None)
        if peer is not None:
            peer.unbind(self.handle, "left")
        self._emit(ParticipantLeft, participant_id=pid, reason=reason)

    def _close(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True  # first: a failed delivery below must not start a grace period
        duration = trio.current_time() - self._started
        self._emit(
            SessionClosed,
            reason=reason,
            duration_s=round(duration, 3),
            started_at=self.state.started_at,
            ended_at=wall_clock(),
        )
        for peer in self._peers.values():
            peer.unbind(self.handle, reason)
        self._peers.clear()
        logger.info("session %s closed: %s after %.0fs", self.state.code, reason, duration)

    # ---------------------------------------------------------------- events

    def _emit(self, kind: type[Event], /, *, exclude: str | None = None, **fields: Any) -> int:
        """Number, log and broadcast one event (encoded once); returns its seq."""
        st = self.state
        st.seq += 1
        frame = encode_event(kind(session=st.code, seq=st.seq, at=wall_clock(), **fields))
        self._log.append(st.seq, frame)
        # Every participant is a member of every open room, so a session event and a room
        # message have the same audience: every connected seat.
        lost = [
            pid for pid, peer in self._peers.items() if pid != exclude and not peer.deliver(frame)
        ]
        for pid in lost:
            if pid in self._peers and not self._closed:
                self._drop(pid)
        return st.seq

    def snapshot(self) -> dict[str, Any]:
        """The session as a fresh joiner sees it."""
        st = self.state
        participants = [
            ParticipantView(id=p.id, name=p.name, role=p.role, presence=p.presence)
            for p in st.participants.values()
        ]
        rooms = [
            RoomView(name=r.name, kind=r.kind, members=list(r.members)) for r in st.rooms.values()
        ]
        return unstructure(
            Snapshot(
                code=st.code,
                status=st.status,
                host_id=st.host_id or "",
                participants=participants,
                rooms=rooms,
                state=st.state,
                version=st.version,
                seq=st.seq,
                epoch=st.epoch,
                started_at=st.started_at,
            )
        )

    def _seated_reply(self, participant: Participant, token: str, **extra: Any) -> dict[str, Any]:
        return {
            "participant_id": participant.id,
            "role": participant.role,
            "resume_token": token,
            **extra,
            **self.snapshot(),
        }

    # ---------------------------------------------------------------- handlers

    def _on_create(self, cmd: Command) -> None:
        req: SessionCreate = cmd.request  # type: ignore[assignment]
        st = self.state
        if st.host_id is not None:  # one source of truth per host: hand back the same session
            host = st.participants[st.host_id]
            token = self._rotate_token(host)
            self._take_seat(host, cmd.peer)
            cmd.peer.reply(cmd.ref, self._seated_reply(host, token, reused=True))
            return
        if req.state is not None:
            self._check_state_size(req.state)
        host, token = self._new_participant(cmd.peer, HOST)
        st.host_id = host.id
        st.state = req.state or {}
        st.participants_can_write_state = req.participants_can_write_state
        self._peers[host.id] = cmd.peer
        cmd.peer.bind(self.handle, host.id)
        logger.info("session %s created by %s (%s)", st.code, host.id, cmd.peer.user_id)
        cmd.peer.reply(cmd.ref, self._seated_reply(host, token, reused=False))

    def _on_join(self, cmd: Command) -> None:
        st = self.state
        peer = cmd.peer
        for seat in st.participants.values():
            if seat.user_id == peer.user_id:  # same user again (another tab): one seat, new link
                token = self._rotate_token(seat)
                self._take_seat(seat, peer)
                peer.reply(cmd.ref, self._seated_reply(seat, token))
                return
        if len(st.participants) >= self._config.max_participants:
            raise ProtocolError(
                ErrorCode.SESSION_FULL, f"session {st.code} has {len(st.participants)} participants"
            )
        participant, token = self._new_participant(peer, PARTICIPANT)
        for room in st.rooms.values():
            room.members[participant.id] = None
        view = ParticipantView(id=participant.id, name=participant.name, role=PARTICIPANT)
        self._emit(ParticipantJoined, exclude=participant.id, participant=view)
        participant.joined_seq = st.seq
        self._peers[participant.id] = peer
        peer.bind(self.handle, participant.id)
        logger.info("session %s: %s joined (%s)", st.code, participant.id, peer.user_id)
        peer.reply(cmd.ref, self._seated_reply(participant, token))

    def _on_resume(self, cmd: Command) -> None:
        req: SessionResume = cmd.request  # type: ignore[assignment]
        participant = self._check_token(req.token)
        st = self.state
        replay = None
        if (
            req.epoch == st.epoch
            and req.last_seq is not None
            and req.last_seq >= participant.joined_seq
        ):
            replay = self._log.since(req.last_seq, st.seq)
        self._take_seat(participant, cmd.peer)
        data: dict[str, Any] = {
            "participant_id": participant.id,
            "role": participant.role,
            "code": st.code,
            "epoch": st.epoch,
            "seq": st.seq,
            "status": st.status,
            "state": st.state,
            "version": st.version,
            "recovered": replay is not None,
            "replayed": len(replay or ()),
        }
        if replay is None:
            data.update(self.snapshot())
        cmd.peer.reply(cmd.ref, data)
        if replay:
            cmd.peer.deliver_many(replay)

    def _on_leave(self, cmd: Command) -> None:
        seat = self._seat(cmd)
        cmd.peer.reply(cmd.ref, {})
        if seat.role == HOST:
            self._close("host_left")
        else:
            self._remove(seat.id, "left")

    def _on_close(self, cmd: Command) -> None:
        self._host_seat(cmd)
        cmd.peer.reply(cmd.ref, {})
        self._close("manual_stop")

    def _on_create_room(self, cmd: Command) -> None:
        req: CreateRoom = cmd.request  # type: ignore[assignment]
        self._host_seat(cmd)
        rooms = self.state.rooms
        room = rooms.get(req.room)
        if room is not None:  # idempotent: the room as it is
            cmd.peer.reply(cmd.ref, {**unstructure(self._room_view(room)), "created": False})
            return
        if len(rooms) >= self._config.max_rooms:
            raise ProtocolError(ErrorCode.ROOM_LIMIT, f"at most {self._config.max_rooms} rooms")
        room = Room(name=req.room, kind=req.kind, members=dict.fromkeys(self.state.participants))
        rooms[room.name] = room
        view = self._room_view(room)
        cmd.peer.reply(cmd.ref, {**unstructure(view), "created": True})
        self._emit(RoomCreated, room=room.name, kind=room.kind, members=view.members)

    def _on_close_room(self, cmd: Command) -> None:
        req: CloseRoom = cmd.request  # type: ignore[assignment]
        self._host_seat(cmd)
        if self.state.rooms.pop(req.room, None) is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no room {req.room!r}")
        cmd.peer.reply(cmd.ref, {})
        self._emit(RoomClosed, room=req.room)

    def _on_room_message(self, cmd: Command) -> None:
        req: RoomMessage = cmd.request  # type: ignore[assignment]
        seat = self._seat(cmd)
        room = self.state.rooms.get(req.room)
        if room is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no room {req.room!r}")
        if seat.id not in room.members:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"not a member of room {req.room!r}")
        # The sender learns the seq of its own message from the reply, not from an event.
        cmd.peer.reply(cmd.ref, {"seq": self.state.seq + 1})
        self._emit(RoomMessageEvent, exclude=seat.id, room=req.room, sender=seat.id, data=req.data)

    def _on_state_set(self, cmd: Command) -> None:
        req: StateSet = cmd.request  # type: ignore[assignment]
        seat = self._check_write(cmd, req.expected_version)
        self._commit_state(cmd, seat, req.state, state=req.state)

    def _on_state_patch(self, cmd: Command) -> None:
        req: StatePatch = cmd.request  # type: ignore[assignment]
        seat = self._check_write(cmd, req.expected_version)
        self._commit_state(cmd, seat, merge_patch(self.state.state, req.patch), patch=req.patch)

    def _check_write(self, cmd: Command, expected: int | None) -> Participant:
        seat = self._seat(cmd)
        st = self.state
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
        self, cmd: Command, seat: Participant, new: dict[str, Any], **change: Any
    ) -> None:
        self._check_state_size(new)
        st = self.state
        st.state = new
        st.version += 1
        cmd.peer.reply(cmd.ref, {"version": st.version})
        self._emit(StateUpdated, version=st.version, by=seat.id, **change)

    def _check_state_size(self, state: dict[str, Any]) -> None:
        size = len(orjson.dumps(state))
        limit = self._config.max_state_size
        if size > limit:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"state is {size} bytes, limit {limit}", size=size, limit=limit
            )

    @staticmethod
    def _room_view(room: Room) -> RoomView:
        return RoomView(name=room.name, kind=room.kind, members=list(room.members))
