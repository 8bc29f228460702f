"""Notices: frames the server sends to one connection or one user, outside any session's event
stream (no ``seq``, never replayed). Each class's ``TYPE`` is its wire tag."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from ._replies import SeatReply


@attrs.frozen(kw_only=True)
class SeatEnded:
    """This connection's seat in ``session`` is gone.

    Sent to a connection that holds seats in other sessions too; a connection whose only seat
    was replaced is closed with 4002 instead. ``reason`` is ``replaced``, or ``removed`` for a
    guardian whose relation to a live ward was removed.
    """

    TYPE: ClassVar[str] = "seat:ended"
    session: str
    reason: str


@attrs.frozen(kw_only=True)
class LiveStarted:
    """To the ward, right after the ``live:start`` reply: who may watch (``guardians``, user
    ids) and which of them were connected and seated (``connected_guardians``)."""

    TYPE: ClassVar[str] = "live:started"
    session: str
    guardians: list[str]
    connected_guardians: list[str]


@attrs.frozen(kw_only=True)
class GuardianLiveStarted(SeatReply):
    """To a guardian's connection, which the server has just seated in ``ward_id``'s live
    session (``session``): the seat, with its resume token, and the session as it is."""

    TYPE: ClassVar[str] = "guardian:liveStarted"
    ward_id: str
    session: str


@attrs.frozen(kw_only=True)
class UserNotice:
    """Something for one user, sent to every connection of theirs (the user-addressed path):
    e.g. an invitation. ``topic`` says what it is; ``data`` is any JSON value."""

    TYPE: ClassVar[str] = "user:notice"
    topic: str
    data: Any = None
    at: str  # ISO 8601 wall-clock time, for display only


Notice = SeatEnded | LiveStarted | GuardianLiveStarted | UserNotice

NOTICE_TYPES: dict[str, type[Notice]] = {
    cls.TYPE: cls for cls in (SeatEnded, LiveStarted, GuardianLiveStarted, UserNotice)
}
