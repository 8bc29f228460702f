"""Events the server pushes, and the views (participants, rooms, snapshot) they carry.

Every event carries the envelope fields ``session``, ``seq`` and ``at``; ``TYPE`` is its wire tag.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import attrs


@attrs.frozen(kw_only=True)
class ParticipantView:
    """A participant as others see it."""

    id: str
    name: str
    role: str  # "host" | "participant" | "guardian" (live sessions)
    presence: str = "online"  # "online" | "away"
    meta: dict[str, Any] | None = None  # what the participant joined with


@attrs.frozen(kw_only=True)
class RoomView:
    """An open room and its members (participant ids)."""

    name: str
    kind: str
    members: list[str]
    meta: dict[str, Any] | None = None  # what the host opened it with


@attrs.frozen(kw_only=True)
class Snapshot:
    """Everything a client needs to rebuild its view of a session from scratch."""

    code: str
    status: str  # "active" | "hibernating"
    host_id: str
    participants: list[ParticipantView]
    rooms: list[RoomView]
    state: dict[str, Any]
    version: int
    seq: int
    epoch: str
    started_at: str
    meta: dict[str, Any] | None = None  # what the host created it with
    kind: str = "session"  # "session", or "live": a ward's, watched by its guardians only


@attrs.frozen(kw_only=True)
class Event:
    """Envelope shared by every event."""

    TYPE: ClassVar[str] = ""
    session: str
    seq: int
    at: str  # ISO 8601 wall-clock time, for display only


@attrs.frozen(kw_only=True)
class ParticipantJoined(Event):
    TYPE: ClassVar[str] = "session:participantJoined"
    participant: ParticipantView


@attrs.frozen(kw_only=True)
class ParticipantLeft(Event):
    TYPE: ClassVar[str] = "session:participantLeft"
    participant_id: str
    reason: str  # "left" | "timeout" | "disconnected"


@attrs.frozen(kw_only=True)
class ParticipantAway(Event):
    TYPE: ClassVar[str] = "session:participantAway"
    participant_id: str
    until: str  # when the seat is given up unless the participant resumes


@attrs.frozen(kw_only=True)
class ParticipantBack(Event):
    TYPE: ClassVar[str] = "session:participantBack"
    participant_id: str


@attrs.frozen(kw_only=True)
class RoomCreated(Event):
    TYPE: ClassVar[str] = "session:roomCreated"
    room: str
    kind: str
    members: list[str]
    meta: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class RoomClosed(Event):
    TYPE: ClassVar[str] = "session:roomClosed"
    room: str


@attrs.frozen(kw_only=True)
class RoomMessageEvent(Event):
    """Wire field ``from`` is ``sender`` here (``from`` is a Python keyword)."""

    TYPE: ClassVar[str] = "room:message"
    room: str
    sender: str
    data: Any = None


@attrs.frozen(kw_only=True)
class StateUpdated(Event):
    """Carries ``state`` after ``state:set`` or ``patch`` after ``state:patch``, never both."""

    TYPE: ClassVar[str] = "state:updated"
    version: int
    by: str
    state: dict[str, Any] | None = None
    patch: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class SessionHibernating(Event):
    TYPE: ClassVar[str] = "session:hibernating"
    until: str
    grace_s: float


@attrs.frozen(kw_only=True)
class SessionResumed(Event):
    TYPE: ClassVar[str] = "session:resumed"


@attrs.frozen(kw_only=True)
class SessionClosed(Event):
    TYPE: ClassVar[str] = "session:closed"
    reason: str  # see CLOSE_REASONS
    duration_s: float
    started_at: str
    ended_at: str


CLOSE_REASONS: Final = (
    "manual_stop",  # the host sent session:close
    "host_left",  # the host sent session:leave
    "host_timeout",  # the host did not come back within host_grace
    "idle_timeout",  # nobody seated and connected, and no request, for idle_timeout
    "replaced_by_host",  # the host created a fresh session instead
    "internal_error",  # a bug in the session's actor
    "admin",  # an operator closed it (DELETE /api/v1/sessions/{code})
    "admin_cleanup",  # an operator's cleanup found it empty and inactive
    "admin_reset",  # an operator closed every session (POST /api/v1/sessions/reset)
    "ward_disconnected",  # a live session's ward did not come back within live_grace
)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        ParticipantJoined,
        ParticipantLeft,
        ParticipantAway,
        ParticipantBack,
        RoomCreated,
        RoomClosed,
        RoomMessageEvent,
        StateUpdated,
        SessionHibernating,
        SessionResumed,
        SessionClosed,
    )
}
