"""Requests a client sends: one frozen attrs class per ``type``.

Each class's ``TYPE`` is its wire tag. Field names are the wire names. Semantic limits (lengths,
ranges) are checked by attrs validators, which raise ``ValueError`` naming the field.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import attrs
import orjson

MAX_NAME_LENGTH: Final = 64  # characters, display names and room names
MAX_TOKEN_LENGTH: Final = 4096  # characters
MAX_CODE_LENGTH: Final = 16  # characters of a session code
MAX_META_SIZE: Final = 4096  # bytes of a ``meta`` object, encoded as JSON
MAX_USER_ID_LENGTH: Final = 256  # characters of a user id (a token's ``sub``)
MAX_ALLOWED_USERS: Final = 1000  # user ids in a session's allow-list


def _length(field: str, low: int, high: int) -> Any:
    def check(_inst: object, _attr: attrs.Attribute[Any], value: str | None) -> None:
        if value is not None and not low <= len(value) <= high:
            raise ValueError(f"{field}: must be {low}-{high} characters")

    return check


def _meta(_inst: object, attr: attrs.Attribute[Any], value: dict[str, Any] | None) -> None:
    if value is not None and len(orjson.dumps(value)) > MAX_META_SIZE:
        raise ValueError(f"{attr.name}: must encode to at most {MAX_META_SIZE} bytes")


def _session_field() -> Any:
    # Which of the connection's sessions a request is for; needed once it holds several.
    return attrs.field(default=None, validator=_length("session", 1, MAX_CODE_LENGTH))


def _user_ids(_inst: object, attr: attrs.Attribute[Any], value: list[str] | None) -> None:
    if value is None:
        return
    if len(value) > MAX_ALLOWED_USERS:
        raise ValueError(f"{attr.name}: at most {MAX_ALLOWED_USERS} user ids")
    if not all(0 < len(user) <= MAX_USER_ID_LENGTH for user in value):
        raise ValueError(f"{attr.name}: each must be 1-{MAX_USER_ID_LENGTH} characters")


def _non_negative(_inst: object, attr: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attr.name}: must be >= 0")


@attrs.frozen(kw_only=True)
class Hello:
    """First frame of every connection: who the client is."""

    TYPE: ClassVar[str] = "hello"
    token: str | None = attrs.field(default=None, validator=_length("token", 1, MAX_TOKEN_LENGTH))
    name: str | None = attrs.field(default=None, validator=_length("name", 1, MAX_NAME_LENGTH))


@attrs.frozen(kw_only=True)
class AuthRefresh:
    """A fresh token for the same user, before the hello token expires."""

    TYPE: ClassVar[str] = "auth:refresh"
    token: str = attrs.field(validator=_length("token", 1, MAX_TOKEN_LENGTH))


@attrs.frozen(kw_only=True)
class Ping:
    """Application-level liveness probe (browsers cannot see WebSocket pings)."""

    TYPE: ClassVar[str] = "ping"


@attrs.frozen(kw_only=True)
class SessionCreate:
    """Open a session hosted by the caller, or get back the one it already hosts.

    ``fresh`` closes the session the caller already hosts (reason ``replaced_by_host``) and
    opens a new one instead; ``another`` opens one more beside it (up to
    ``max_sessions_per_host``). ``allowed_users``: only these user ids may join (the host
    always may); ``anonymous``: anonymous connections may join (on a server that has them).
    """

    TYPE: ClassVar[str] = "session:create"
    state: dict[str, Any] | None = None
    participants_can_write_state: bool = False
    fresh: bool = False
    another: bool = False
    meta: dict[str, Any] | None = attrs.field(default=None, validator=_meta)
    allowed_users: list[str] | None = attrs.field(default=None, validator=_user_ids)
    anonymous: bool = False


@attrs.frozen(kw_only=True)
class SessionJoin:
    """Join a live session by its code."""

    TYPE: ClassVar[str] = "session:join"
    code: str = attrs.field(validator=_length("code", 1, MAX_CODE_LENGTH))
    # the participant's, shown to the others
    meta: dict[str, Any] | None = attrs.field(default=None, validator=_meta)


@attrs.frozen(kw_only=True)
class SessionResume:
    """Take back a seat with its resume token, replaying what was missed after ``last_seq``."""

    TYPE: ClassVar[str] = "session:resume"
    token: str = attrs.field(validator=_length("token", 1, 256))
    last_seq: int | None = attrs.field(default=None, validator=_non_negative)
    epoch: str | None = None


@attrs.frozen(kw_only=True)
class SessionLeave:
    """Give up the seat now (no grace period)."""

    TYPE: ClassVar[str] = "session:leave"
    session: str | None = _session_field()


@attrs.frozen(kw_only=True)
class SessionClose:
    """Host only: end the session for everyone."""

    TYPE: ClassVar[str] = "session:close"
    session: str | None = _session_field()


@attrs.frozen(kw_only=True)
class CreateRoom:
    """Host only: open a room; every participant becomes a member."""

    TYPE: ClassVar[str] = "session:createRoom"
    room: str = attrs.field(validator=_length("room", 1, MAX_NAME_LENGTH))
    kind: str = attrs.field(default="generic", validator=_length("kind", 1, MAX_NAME_LENGTH))
    meta: dict[str, Any] | None = attrs.field(default=None, validator=_meta)
    session: str | None = _session_field()


@attrs.frozen(kw_only=True)
class CloseRoom:
    """Host only: close a room."""

    TYPE: ClassVar[str] = "session:closeRoom"
    room: str = attrs.field(validator=_length("room", 1, MAX_NAME_LENGTH))
    session: str | None = _session_field()


@attrs.frozen(kw_only=True)
class RoomMessage:
    """Relay ``data`` (any JSON value) to the other members of a room."""

    TYPE: ClassVar[str] = "room:message"
    room: str = attrs.field(validator=_length("room", 1, MAX_NAME_LENGTH))
    data: Any = None
    session: str | None = _session_field()


@attrs.frozen(kw_only=True)
class StateSet:
    """Replace the session's authoritative state."""

    TYPE: ClassVar[str] = "state:set"
    state: dict[str, Any]
    expected_version: int | None = attrs.field(default=None, validator=_non_negative)
    session: str | None = _session_field()
    durable: bool = False  # reply only once the change is committed to the store


@attrs.frozen(kw_only=True)
class StatePatch:
    """Amend the session's state with an RFC 7386 JSON merge patch."""

    TYPE: ClassVar[str] = "state:patch"
    patch: dict[str, Any]
    expected_version: int | None = attrs.field(default=None, validator=_non_negative)
    session: str | None = _session_field()
    durable: bool = False  # reply only once the change is committed to the store


@attrs.frozen(kw_only=True)
class LiveStart:
    """A ward goes live: a session only the ward's accepted guardians watch, seated by the
    server on their connections."""

    TYPE: ClassVar[str] = "live:start"
    state: dict[str, Any] | None = None
    meta: dict[str, Any] | None = attrs.field(default=None, validator=_meta)


@attrs.frozen(kw_only=True)
class LiveStop:
    """The ward ends its live session (reason ``manual_stop``)."""

    TYPE: ClassVar[str] = "live:stop"
    session: str | None = _session_field()


@attrs.frozen(kw_only=True)
class LiveWatch:
    """Not on the wire: the server seats a guardian's connection in a live session."""

    TYPE: ClassVar[str] = "live:watch"


Request = (
    Hello
    | AuthRefresh
    | Ping
    | SessionCreate
    | SessionJoin
    | SessionResume
    | SessionLeave
    | SessionClose
    | CreateRoom
    | CloseRoom
    | RoomMessage
    | StateSet
    | StatePatch
    | LiveStart
    | LiveStop
)

SessionRequest = (
    SessionLeave
    | SessionClose
    | CreateRoom
    | CloseRoom
    | RoomMessage
    | StateSet
    | StatePatch
    | LiveStop
)
"""Requests for a session the connection is seated in; ``session`` names it."""

SESSION_REQUESTS: Final = (
    SessionLeave,
    SessionClose,
    CreateRoom,
    CloseRoom,
    RoomMessage,
    StateSet,
    StatePatch,
    LiveStop,
)

REQUEST_TYPES: dict[str, type[Request]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        AuthRefresh,
        Ping,
        SessionCreate,
        SessionJoin,
        SessionResume,
        SessionLeave,
        SessionClose,
        CreateRoom,
        CloseRoom,
        RoomMessage,
        StateSet,
        StatePatch,
        LiveStart,
        LiveStop,
    )
}
