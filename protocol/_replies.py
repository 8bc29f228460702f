"""The ``data`` of successful replies: one frozen attrs class per kind of answer.

Built by whoever answers (the connection for ``hello``, a session actor for the rest) and read
back by clients through the same converter (:func:`protocol.decode_reply`), so both ends agree
on every field. Optional fields that are ``None`` are left out of the frame.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._events import ParticipantView, RoomView, Snapshot


@attrs.frozen(kw_only=True)
class Empty:
    """``{}``: the request was applied."""


@attrs.frozen(kw_only=True)
class HelloReply:
    """Who the connection is, and the limits it must keep to."""

    connection_id: str
    user_id: str
    name: str
    heartbeat_interval: float  # seconds
    max_message_size: int  # bytes per frame the server accepts
    server: str
    anonymous: bool = False  # admitted without a token (--allow-anonymous): join-only
    expires_at: str | None = None  # when the hello token expires (ISO 8601); refresh before


@attrs.frozen(kw_only=True)
class SeatReply(Snapshot):
    """A seat (after ``session:create`` or ``session:join``) and the session as it is now.

    ``resume_token`` is secret: it takes the seat back on another connection. ``reused`` (create
    only) says the caller already hosted this session.
    """

    participant_id: str
    role: str
    resume_token: str
    reused: bool | None = None


@attrs.frozen(kw_only=True)
class LiveReply(SeatReply):
    """The ward's seat in its new live session, who may watch it (``guardians``) and who was
    connected and seated at once (``connected_guardians``)."""

    guardians: list[str]
    connected_guardians: list[str]


@attrs.frozen(kw_only=True)
class AuthReply:
    """The connection's identity after a token refresh; ``expires_at`` (ISO 8601) is when the
    new token expires, ``None`` if it does not."""

    user_id: str
    expires_at: str | None = None


@attrs.frozen(kw_only=True)
class ResumeReply:
    """The seat taken back. With ``recovered`` the ``replayed`` missed events follow the reply;
    without it, the snapshot fields (``host_id``, ``participants``, ``rooms``, ``started_at``,
    ``meta``) are filled in to rebuild from."""

    participant_id: str
    role: str
    code: str
    epoch: str
    seq: int
    status: str
    state: dict[str, Any]
    version: int
    recovered: bool
    replayed: int
    host_id: str | None = None
    participants: list[ParticipantView] | None = None
    rooms: list[RoomView] | None = None
    started_at: str | None = None
    meta: dict[str, Any] | None = None
    kind: str | None = None


@attrs.frozen(kw_only=True)
class RoomReply(RoomView):
    """The room, and whether this request opened it (``False``: it was already open)."""

    created: bool


@attrs.frozen(kw_only=True)
class SeqReply:
    """The ``seq`` of the event the request caused (a room message)."""

    seq: int


@attrs.frozen(kw_only=True)
class VersionReply:
    """The state's version after the change."""

    version: int


Reply = (
    Empty
    | HelloReply
    | AuthReply
    | SeatReply
    | LiveReply
    | ResumeReply
    | RoomReply
    | SeqReply
    | VersionReply
)

REPLY_TYPES: dict[str, type[Reply]] = {
    "hello": HelloReply,
    "auth:refresh": AuthReply,
    "ping": Empty,
    "session:create": SeatReply,
    "session:join": SeatReply,
    "session:resume": ResumeReply,
    "session:leave": Empty,
    "session:close": Empty,
    "session:createRoom": RoomReply,
    "session:closeRoom": Empty,
    "room:message": SeqReply,
    "state:set": VersionReply,
    "state:patch": VersionReply,
    "live:start": LiveReply,
    "live:stop": Empty,
}
"""The reply class of each request type."""
