"""Live sessions: a ward goes live, and only the ward's accepted guardians watch.

The server seats the guardians itself: those connected when the ward starts (on their newest
connection) and those who connect while it is live (their connection asks, ``live:watch``).
Nobody joins a live session by code. It ends with ``live:stop`` (``manual_stop``) or when the
ward does not come back within ``live_grace`` (``ward_disconnected``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol import (
    Empty,
    ErrorCode,
    GuardianLiveStarted,
    LiveReply,
    LiveStart,
    LiveStarted,
    LiveStop,
    LiveWatch,
    ProtocolError,
    encode_event,
)

from ._state import AWAY, GUARDIAN, HOST, LIVE, Participant

if TYPE_CHECKING:
    from ._messages import Command, Peer
    from ._session import SessionActor


def on_live_start(actor: SessionActor, cmd: Command, req: LiveStart) -> None:
    """Seat the ward as host, then every connected guardian; the ward is answered once all
    are seated, so its snapshot and every guardian's show the same seats (no events needed)."""
    st = actor.state
    if st.kind != LIVE or st.host_id is not None:  # the router sends it to a new live session
        raise ProtocolError(ErrorCode.BAD_REQUEST, "live:start opens a new live session")
    size = actor.check_state_size(req.state) if req.state is not None else None
    ward, token = actor.seats.new(cmd.peer, HOST)
    st.host_id = ward.id
    actor.replace_state(req.state or {}, size)
    actor.seats.connect(ward, cmd.peer)
    cmd.seat = ward.id
    guardians = list(st.allowed_users or ())
    seated = [granted for user in guardians if (granted := _grant(actor, user)) is not None]
    for seat, _, peer in seated:
        actor.seats.connect(seat, peer)  # no events: everyone gets the snapshot below
    connected = [seat.user_id for seat, _, _ in seated]
    actor.answer(
        cmd,
        LiveReply(
            **actor.snapshot_fields(),
            participant_id=ward.id,
            role=HOST,
            resume_token=token,
            guardians=guardians,
            connected_guardians=connected,
        ),
    )
    actor.send_to(
        cmd.peer,
        encode_event(
            LiveStarted(session=st.code, guardians=guardians, connected_guardians=connected)
        ),
    )
    for seat, secret, peer in seated:
        _notify_guardian(actor, peer, seat, secret)


def on_live_watch(actor: SessionActor, cmd: Command, req: LiveWatch) -> None:
    """A guardian's connection, just after its ``hello``, asks for its seat: a new one, or the
    one its user holds on another connection (another tab: taken over, as a join would).

    A seat in its grace period is left alone: the client that dropped resumes it with its
    token (``session:resume``) and gets what it missed replayed. Should the grace run out
    first, :func:`reseat_guardian` seats the user's newest connection afresh.
    """
    st = actor.state
    peer = cmd.peer
    if st.kind != LIVE or peer.user_id not in (st.allowed_users or ()):
        raise ProtocolError(ErrorCode.FORBIDDEN, "not a guardian of this live session")
    seat = next((p for p in st.participants.values() if p.user_id == peer.user_id), None)
    if seat is not None and seat.presence == AWAY:
        actor.answer(cmd, Empty())  # not seated: the resume will be
        return
    if seat is not None:
        actor.seats.take(seat, peer)
        token = actor.seats.rotate_token(seat)
    else:
        seat, token = actor.seats.new(peer, GUARDIAN)
        actor.seats.join(seat, peer)
    cmd.seat = seat.id
    actor.answer(cmd, Empty())
    _notify_guardian(actor, peer, seat, token)


def reseat_guardian(actor: SessionActor, user: str) -> None:
    """A guardian's seat was given up at the end of its grace while the user is connected on
    another link (which left the old seat for a resume that never came): seat that link."""
    if actor.closed or user not in (actor.state.allowed_users or ()):
        return
    granted = _grant(actor, user)
    if granted is not None:
        seat, token, peer = granted
        actor.seats.join(seat, peer)
        _notify_guardian(actor, peer, seat, token)


def on_live_stop(actor: SessionActor, cmd: Command, req: LiveStop) -> None:
    """The ward ends its live session."""
    actor.host_seat_of(cmd)
    if actor.state.kind != LIVE:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "not a live session: use session:close")
    actor.answer(cmd, Empty())
    actor.close("manual_stop")


def set_guardians(actor: SessionActor, guardians: tuple[str, ...]) -> None:
    """The ward's accepted guardians changed: the seats of those removed are given up, and
    those added who are connected are seated and told."""
    st = actor.state
    st.allowed_users = list(guardians)
    for seat in [p for p in st.participants.values() if p.role == GUARDIAN]:
        if seat.user_id not in guardians:
            actor.seats.remove(seat.id, "removed")
    seated = {p.user_id for p in st.participants.values()}
    for user in guardians:
        if user not in seated:
            reseat_guardian(actor, user)


def _grant(actor: SessionActor, user: str) -> tuple[Participant, str, Peer] | None:
    """A new guardian seat for ``user``'s newest connection, which records it (``None``: no
    connection, or it has no room for one more seat). Not connected yet."""
    peers = actor.directory.peers_of(user)
    if not peers:
        return None
    peer = peers[-1]
    seat, token = actor.seats.new(peer, GUARDIAN)
    if not peer.seat_granted(actor.handle, seat.id):
        del actor.state.participants[seat.id]
        return None
    return seat, token, peer


def _notify_guardian(actor: SessionActor, peer: Peer, seat: Participant, token: str) -> None:
    st = actor.state
    actor.send_to(
        peer,
        encode_event(
            GuardianLiveStarted(
                **actor.snapshot_fields(),
                participant_id=seat.id,
                role=seat.role,
                resume_token=token,
                ward_id=st.host_user_id,
                session=st.code,
            )
        ),
    )
