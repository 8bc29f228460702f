"""The admin API's bodies: one attrs class per request and response, and their converter.

The handlers build and read these classes, and ``_openapi.py`` derives the served document's
schemas from the same classes, so the document cannot drift from what is sent. A live
session's detail is :class:`actors.SessionView` itself. A field's constraints are declared once
(:func:`number`, :func:`text`): they become both the attrs validator and the JSON schema.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import attrs
import cattrs
from cattrs.preconf.orjson import make_converter
from cattrs.v import format_exception

if TYPE_CHECKING:
    from attrs import AttrsInstance

    from actors import ClosedSession, SessionView

SCHEMA: Final = "schema"  # attrs metadata key: JSON-schema keywords added to the field's
T = TypeVar("T")
_View = TypeVar("_View", bound="AttrsInstance")


def number(*, minimum: float) -> float:
    """A required finite number field, at least ``minimum``."""

    def check(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
        if not math.isfinite(value) or value < minimum:
            raise ValueError(f"{attribute.name} must be a finite number >= {minimum}")

    schema = {"minimum": minimum}
    return attrs.field(validator=check, metadata={SCHEMA: schema})


def text(*, max_length: int) -> str:
    """A required non-empty string field of at most ``max_length`` characters."""

    def check(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
        if not 1 <= len(value) <= max_length:
            raise ValueError(f"{attribute.name} must be 1 to {max_length} characters")

    schema = {"minLength": 1, "maxLength": max_length}
    return attrs.field(validator=check, metadata={SCHEMA: schema})


# ---------------------------------------------------------------- errors and health


@attrs.frozen
class ErrorDetail:
    """What went wrong: a stable ``code`` (see docs/operations.md) and a readable message."""

    code: str
    message: str


@attrs.frozen
class ErrorBody:
    """Every error response: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


@attrs.frozen
class Health:
    """``/healthz``: the process is alive."""

    ok: bool


@attrs.frozen
class ReadyState:
    """``/readyz``: ready when listening, the store answers and the server is not stopping;
    else ``reasons`` lists what is wrong (``not_listening``, ``store_unreachable``,
    ``draining``)."""

    ready: bool
    reasons: list[str]


# ---------------------------------------------------------------- sessions


@attrs.frozen(kw_only=True)
class SessionSummary:
    """One live session in a listing."""

    code: str
    kind: str  # "session" | "live"
    status: str  # "active" | "hibernating"
    host_user_id: str
    created_at: str  # ISO 8601
    last_activity: str  # ISO 8601
    active_clients: int  # seats with a live connection
    participants: int  # seats, connected or in grace
    rooms: list[str]
    meta: dict[str, Any] | None

    @classmethod
    def of(cls, view: SessionView) -> SessionSummary:
        return _copy(cls, view)


@attrs.frozen(kw_only=True)
class SessionList:
    """A page of live sessions, by code. ``next_cursor``: pass it as ``cursor`` for the next
    page (``null`` on the last); ``timed_out``: sessions that did not answer in time."""

    sessions: list[SessionSummary]
    next_cursor: str | None
    timed_out: list[str]


@attrs.frozen(kw_only=True)
class UserSessions:
    """The live sessions a user hosts or holds a seat in."""

    user_id: str
    sessions: list[SessionSummary]
    timed_out: list[str]


@attrs.frozen(kw_only=True)
class ClosedSessionView:
    """A closed session, as the store's history keeps it."""

    code: str
    status: Literal["closed"]
    host_user_id: str
    started_at: str  # ISO 8601
    ended_at: str  # ISO 8601
    duration_s: float
    reason: str
    peak_participants: int

    @classmethod
    def of(cls, closed: ClosedSession) -> ClosedSessionView:
        return _copy(cls, closed, status="closed")


@attrs.frozen(kw_only=True)
class HistoryPage:
    """Closed sessions, newest first. ``next_cursor``: pass it as ``cursor`` for older ones
    (``null`` on the last page); ``retention_seconds``: how long the store keeps them."""

    sessions: list[ClosedSessionView]
    next_cursor: str | None
    retention_seconds: float


@attrs.frozen(kw_only=True)
class CloseResult:
    """A session an operator closed."""

    code: str
    reason: str


@attrs.frozen(kw_only=True)
class CleanupRequest:
    """Close every session with no connected client and no activity for this long."""

    max_inactive_hours: float = number(minimum=0)


@attrs.frozen(kw_only=True)
class CleanupResult:
    """The sessions a cleanup closed (reason ``admin_cleanup``)."""

    removed_sessions: list[str]
    count: int


@attrs.frozen(kw_only=True)
class ResetRequest:
    """Close every session: only with ``confirm: true`` (else 409)."""

    confirm: bool = False


@attrs.frozen(kw_only=True)
class ResetResult:
    """The sessions a reset closed (reason ``admin_reset``)."""

    closed_sessions: list[str]
    count: int


# ---------------------------------------------------------------- relations and notify


@attrs.frozen(kw_only=True)
class RelationBody:
    """A ward and one of its guardians (user ids)."""

    ward: str = text(max_length=256)
    guardian: str = text(max_length=256)


@attrs.frozen(kw_only=True)
class RelationView:
    """A stored relation."""

    ward: str
    guardian: str
    created_at: str  # ISO 8601


@attrs.frozen(kw_only=True)
class RelationList:
    """Relations, of one ward or all."""

    relations: list[RelationView]


@attrs.frozen(kw_only=True)
class RelationAdded:
    """``created``: false when the relation existed already."""

    ward: str
    guardian: str
    created: bool


@attrs.frozen(kw_only=True)
class RelationRemoved:
    """A relation removed."""

    ward: str
    guardian: str
    removed: bool


@attrs.frozen(kw_only=True)
class NotifyRequest:
    """An event for every connection of one user: its ``topic`` and any JSON ``data``."""

    topic: str = text(max_length=200)
    data: Any = None


@attrs.frozen(kw_only=True)
class NotifyResult:
    """How many of the user's connections the event reached."""

    user_id: str
    topic: str
    delivered: int


# ---------------------------------------------------------------- cluster


@attrs.frozen(kw_only=True)
class ClusterNodeView:
    """One registered node incarnation: alive while its lease is, with the sessions it owns."""

    node_id: str
    incarnation: int
    alive: bool
    url: str | None
    sessions: int
    this_node: bool


@attrs.frozen(kw_only=True)
class RelayStatistics:
    """This node's relay: connections relayed to other nodes' sessions, remote connections
    served here, links, batches published, and resets (a link that lost operations)."""

    relayed_connections: int
    remote_peers: int
    links: int
    batches_published: int
    resets: int


@attrs.frozen(kw_only=True)
class ClusterView:
    """The cluster as this node sees it in Redis (``--cluster``); per-node listings such as
    ``GET /sessions`` cover only the node asked."""

    node_id: str
    redis_available: bool
    sessions: int  # owned by live nodes, in all
    nodes: list[ClusterNodeView]
    relay: RelayStatistics
    taken_over: int  # sessions this node took over from dead nodes since it started


def _copy(cls: type[_View], source: object, **extra: Any) -> _View:
    """A ``cls`` with the fields of the same names taken from ``source`` (plus ``extra``)."""
    fields = {f.name: getattr(source, f.name) for f in attrs.fields(cls) if f.name not in extra}
    return cls(**fields, **extra)


# ---------------------------------------------------------------- the converter


converter: Final = make_converter(detailed_validation=True)


def _strict(kind: type) -> Any:
    # cattrs would coerce "5" to 5 and true to 1.0; an API should say the field is wrong.
    def structure(value: Any, _type: Any) -> Any:
        if type(value) is kind or (kind is float and type(value) is int):
            return value
        raise TypeError(f"expected {'number' if kind is float else kind.__name__}")

    return structure


for _kind in (str, int, float, bool):
    converter.register_structure_hook(_kind, _strict(_kind))


def structure(data: object, cls: type[T]) -> T:
    """``data`` (decoded JSON) as ``cls``. Raises :class:`BodyError` naming the field."""
    if not isinstance(data, dict):
        raise BodyError("the body must be a JSON object")
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as error:
        messages = cattrs.transform_error(error, format_exception=_describe)
        raise BodyError("; ".join(messages)) from None


def _describe(error: BaseException, kind: type | None) -> str:
    if type(error) is ValueError:  # a field's validator: its message names the rule
        return str(error)
    return format_exception(error, kind)


class BodyError(ValueError):
    """A request body that does not fit its class; the message names the field."""
