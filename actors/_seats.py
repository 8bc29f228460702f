"""Seats of a session: who is connected on which connection, grace deadlines, resume tokens.

Part of the session actor (only its task calls in here). A seat belongs to a participant, not to
a connection: a connection that drops leaves the seat for a grace period, and a resume token
takes it back.
"""

from __future__ import annotations

import logging
import math
import weakref
from typing import TYPE_CHECKING, Any

import trio

from protocol import (
    SECRET_BYTES,
    ErrorCode,
    ParticipantAway,
    ParticipantBack,
    ParticipantJoined,
    ParticipantLeft,
    ProtocolError,
    ResumeToken,
    SeatEnded,
    SessionHibernating,
    SessionResumed,
    encode_event,
    hash_secret,
    new_secret,
    parse_token,
    secret_matches,
)

from ._live import reseat_guardian
from ._state import ACTIVE, AWAY, GUARDIAN, HIBERNATING, HOST, LIVE, ONLINE, Participant
from ._views import participant_view

if TYPE_CHECKING:
    from ._messages import Peer
    from ._session import SessionActor

logger = logging.getLogger(__name__)


class Seats:
    """The runtime side of a session's seats: live connections and deadlines."""

    def __init__(self, actor: SessionActor) -> None:
        # A weak back-reference: a strong one would make actor <-> seats a cycle, and a closed
        # session would then wait for the cycle collector to free its state and log.
        self._actor = weakref.proxy(actor)
        self.peers: dict[str, Peer] = {}  # participant id -> its live connection
        self._deadlines: dict[str, float] = {}  # away participant id -> end of its grace
        self.host_deadline = math.inf  # end of the host's grace while hibernating
        self._replaced_at: dict[str, float] = {}  # participant id -> when a newer link took it
        self.last_seen: dict[str, float] = {}  # away participant id -> when its link ended

    # ---------------------------------------------------------------- timers

    def next_deadline(self) -> float:
        """The earliest grace deadline, ``inf`` when no grace is running."""
        return min(self.host_deadline, *self._deadlines.values(), math.inf)

    def expire(self, now: float) -> bool:
        """Act on the deadlines due at ``now``; whether a grace ended."""
        actor = self._actor
        if now >= self.host_deadline:
            actor.close("ward_disconnected" if actor.state.kind == LIVE else "host_timeout")
            return True
        due = [pid for pid, deadline in self._deadlines.items() if now >= deadline]
        for pid in due:
            seat = actor.state.participants[pid]
            self.remove(pid, "timeout")
            if seat.role == GUARDIAN:
                reseat_guardian(actor, seat.user_id)
        return bool(due)

    # ---------------------------------------------------------------- seats

    def new(
        self, peer: Peer, role: str, meta: dict[str, Any] | None = None
    ) -> tuple[Participant, str]:
        """A new seat for ``peer``'s user, not yet connected; returns it and its resume token."""
        actor = self._actor
        participant = Participant(
            id="p_" + actor.env.token_hex(6),
            user_id=peer.user_id,
            name=peer.name,
            role=role,
            token_hash="",
            joined_seq=actor.state.seq,
            meta=meta,
            anonymous=peer.anonymous,
        )
        actor.state.participants[participant.id] = participant
        return participant, self.rotate_token(participant)

    def rotate_token(self, participant: Participant) -> str:
        """Issue a new resume token for the seat; the previous one stops working."""
        secret = new_secret(self._actor.env.token_bytes(SECRET_BYTES))
        participant.token_hash = hash_secret(secret)
        return str(ResumeToken(self._actor.state.code, participant.id, secret))

    def check_token(self, token: str) -> Participant:
        """The seat ``token`` resumes. Checked before anything is touched: a bad token changes
        nothing (no timer, no presence)."""
        parsed = parse_token(token)
        participant: Participant | None = (
            self._actor.state.participants.get(parsed.participant_id) if parsed else None
        )
        if (
            parsed is None
            or participant is None
            or parsed.code != self._actor.state.code
            or not secret_matches(parsed.secret, participant.token_hash)
        ):
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "invalid or expired resume token")
        return participant

    def join(self, participant: Participant, peer: Peer) -> None:
        """Put ``peer`` on a new seat in a session under way: a member of every room, and
        everyone else is told (``participantJoined``)."""
        actor = self._actor
        frame = actor.prepare(ParticipantJoined, participant=participant_view(participant))
        for room in actor.state.rooms.values():
            room.members[participant.id] = None
        actor.publish(frame, exclude=participant.id)
        participant.joined_seq = actor.state.seq
        self.connect(participant, peer)

    def connect(self, participant: Participant, peer: Peer) -> None:
        """Put ``peer`` on a new seat (create, first join)."""
        self.peers[participant.id] = peer

    def take(self, participant: Participant, peer: Peer) -> None:
        """Bind ``peer`` to an existing seat; a different live connection on it is replaced.

        Refused with ``seat_busy`` (changing nothing) when the seat was taken over less than
        ``seat_replace_interval`` ago: two tabs that reconnect on any close cannot make the
        server spin.
        """
        actor = self._actor
        old = self.peers.get(participant.id)
        if old is not None and old is not peer:
            now = trio.current_time()
            wait = self._replaced_at.get(participant.id, -math.inf) + (
                actor.config.seat_replace_interval
            )
            if now < wait:
                retry = math.ceil((wait - now) * 1000)
                raise ProtocolError(
                    ErrorCode.SEAT_BUSY,
                    f"this seat was taken over less than {actor.config.seat_replace_interval}s "
                    "ago; retry later",
                    retry_after_ms=retry,
                )
            self._replaced_at[participant.id] = now
            actor.replace_notice(old)
        self.peers[participant.id] = peer
        if participant.presence == AWAY:
            participant.presence = ONLINE
            if participant.role == HOST:
                actor.state.status = ACTIVE
                self.host_deadline = math.inf
                logger.info(
                    "session %s: host is back",
                    actor.state.code,
                    extra={"session": actor.state.code, "participant": participant.id},
                )
                actor.emit(SessionResumed, exclude=participant.id)
            else:
                del self._deadlines[participant.id]
                actor.emit(ParticipantBack, exclude=participant.id, participant_id=participant.id)

    def gone(self, peer: Peer, pid: str) -> None:
        """``peer``'s connection ended; if it still held seat ``pid``, the grace starts."""
        if self.peers.get(pid) is peer:
            self.drop(pid)

    def drop(self, pid: str) -> None:
        """The connection of ``pid`` ended without a leave: keep the seat for its grace period."""
        actor = self._actor
        participant = actor.state.participants[pid]
        del self.peers[pid]
        participant.presence = AWAY
        self.last_seen[pid] = trio.current_time()
        if participant.role == HOST:
            grace = actor.config.live_grace if actor.state.kind == LIVE else actor.config.host_grace
            actor.state.status = HIBERNATING
            self.host_deadline = trio.current_time() + grace
            logger.info(
                "session %s: host dropped, hibernating for %ss",
                actor.state.code,
                grace,
                extra={"session": actor.state.code, "participant": pid},
            )
            actor.emit(SessionHibernating, until=actor.env.iso(grace), grace_s=grace)
        else:
            grace = actor.config.participant_grace
            self._deadlines[pid] = trio.current_time() + grace
            actor.emit(ParticipantAway, participant_id=pid, until=actor.env.iso(grace))

    def remove(self, pid: str, reason: str) -> None:
        """Give up a participant's seat for good."""
        actor = self._actor
        del actor.state.participants[pid]
        self._deadlines.pop(pid, None)
        self._replaced_at.pop(pid, None)
        self.last_seen.pop(pid, None)
        for room in actor.state.rooms.values():
            room.members.pop(pid, None)
        peer = self.peers.pop(pid, None)
        if peer is not None:
            if reason == "removed":  # not the participant's doing: tell it
                peer.deliver(encode_event(SeatEnded(session=actor.state.code, reason=reason)))
            peer.seat_ended(actor.state.code, "left")
        actor.emit(ParticipantLeft, participant_id=pid, reason=reason)

    def restore_away(self) -> None:
        """Start-up from the store: everyone is away, and every grace starts now."""
        actor = self._actor
        now = trio.current_time()
        for participant in actor.state.participants.values():
            participant.presence = AWAY
            self.last_seen[participant.id] = now
            if participant.role == HOST:
                actor.state.status = HIBERNATING
                grace = (
                    actor.config.live_grace if actor.state.kind == LIVE else actor.config.host_grace
                )
                self.host_deadline = now + grace
            else:
                self._deadlines[participant.id] = now + actor.config.participant_grace

    def broadcast(self, frame: str, exclude: str | None) -> None:
        """Hand ``frame`` to every connected seat but ``exclude``; a refused one is dropped."""
        lost = [
            pid for pid, peer in self.peers.items() if pid != exclude and not peer.deliver(frame)
        ]
        for pid in lost:
            if pid in self.peers and not self._actor.closed:
                self.drop(pid)

    def release_all(self, reason: str) -> None:
        """The session ended: every connection forgets its seat here."""
        code = self._actor.state.code
        for peer in self.peers.values():
            peer.seat_ended(code, reason)
        self.peers.clear()
