"""The admin API's endpoints: one handler per operation, and the table that routes to them.

The table (:func:`operations`) is the single description of the API: ``_app.py`` routes and
validates query parameters and bodies from it, and ``_openapi.py`` documents it. Handlers reach
sessions only through ``_sessions.py`` (messages into actors' inboxes).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import attrs

from actors import SessionView

from . import _sessions
from ._health import ALIVE
from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._openapi import openapi_document
from ._schemas import (
    CleanupRequest,
    CleanupResult,
    ClosedSessionView,
    CloseResult,
    ClusterView,
    Health,
    HistoryPage,
    NotifyRequest,
    NotifyResult,
    ReadyState,
    RelationAdded,
    RelationBody,
    RelationList,
    RelationRemoved,
    RelationView,
    ResetRequest,
    ResetResult,
    SessionList,
    SessionSummary,
    UserSessions,
    converter,
)

if TYPE_CHECKING:
    from actors import Config, SessionHandle, Supervisor
    from store import RelationStore, Store

    from ._health import Readiness
    from ._metrics import Metrics

logger = logging.getLogger(__name__)

JSON: Final = "application/json"
API: Final = "/api/v1"
MAX_PAGE: Final = 1000  # items per page at most
DEFAULT_PAGE: Final = 100  # items per page unless ``limit`` says otherwise
T = TypeVar("T")


class ApiError(Exception):
    """An error response: HTTP ``status``, a stable ``code`` and a readable message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


NotifyUser = Callable[[str, str, Any], int]
"""``notify_user(user_id, topic, data)``: sends the event to every connection of the user;
returns how many it reached."""


@attrs.define(kw_only=True)
class AdminApi:
    """What the handlers work with: the server's parts, and the optional hooks."""

    config: Config
    supervisor: Supervisor
    store: Store
    readiness: Readiness
    metrics: Metrics | None
    relations: RelationStore | None = None
    on_relations_changed: Callable[[str], None] = lambda _ward: None
    notify_user: NotifyUser | None = None
    cluster: ClusterSource | None = None  # cluster mode: this node
    document: dict[str, Any] = attrs.field(factory=lambda: openapi_document(operations()))


@attrs.frozen
class Param:
    """A query parameter: its name, description and JSON schema (``integer`` with
    ``minimum``/``maximum``/``default``, a string ``enum``, a string with a ``pattern``, or a
    string)."""

    name: str
    description: str
    schema: dict[str, Any]

    def parse(self, raw: str) -> str | int:
        """The value of ``raw``. Raises :class:`ApiError` (400) naming the parameter."""
        schema = self.schema
        if schema["type"] == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise ApiError(400, "bad_request", f"{self.name} must be an integer") from None
            low, high = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
            if not low <= value <= high:
                raise ApiError(400, "bad_request", f"{self.name} must be in [{low}, {high}]")
            return value
        if "enum" in schema and raw not in schema["enum"]:
            choices = ", ".join(schema["enum"])
            raise ApiError(400, "bad_request", f"{self.name} must be one of {choices}")
        if "pattern" in schema and not re.search(schema["pattern"], raw):
            raise ApiError(400, "bad_request", f"{self.name} must match {schema['pattern']}")
        return raw


@attrs.frozen
class Call:
    """One request as a handler sees it: path parameters, the declared query parameters
    present (parsed), and the body structured into the operation's class."""

    path: dict[str, str]
    query: dict[str, str | int]
    body: object | None

    def text(self, name: str) -> str | None:
        value = self.query.get(name)
        return value if isinstance(value, str) else None

    def integer(self, name: str, default: int) -> int:
        value = self.query.get(name)
        return value if isinstance(value, int) else default

    def body_as(self, cls: type[T]) -> T:
        if not isinstance(self.body, cls):
            raise ApiError(400, "bad_request", "a JSON body is required")
        return self.body


@attrs.frozen
class Reply:
    """A response: ``status``, and ``body`` (an attrs instance or a dict, sent as JSON; bytes
    are sent as they are, with ``content_type``)."""

    status: int
    body: object
    content_type: str = JSON


Handler = Callable[[AdminApi, Call], Awaitable[Reply]]


@attrs.frozen(kw_only=True)
class Operation:
    """One endpoint: where, how it is answered, and what the document says about it.

    ``statuses`` answer with ``response``, ``errors`` with the error body; 400 (any request
    may carry an unknown query parameter) and, with ``auth``, 401 are implied.
    ``while_draining``: answered while the server shuts down (else 503).
    """

    method: str
    path: str  # segments in braces are path parameters
    summary: str
    description: str = ""
    handler: Handler
    response: Any  # the type of the success body
    statuses: tuple[int, ...] = (200,)
    errors: tuple[int, ...] = ()
    query: tuple[Param, ...] = ()
    body: type | None = None
    body_required: bool = True
    auth: bool = True
    while_draining: bool = False
    content_type: str = JSON

    def path_parameters(self) -> list[str]:
        return [s[1:-1] for s in self.path.split("/") if s.startswith("{")]

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` is this operation's, else ``None``."""
        template, actual = self.path.split("/"), path.split("/")
        if len(template) != len(actual):
            return None
        found = {}
        for want, have in zip(template, actual, strict=True):
            if want.startswith("{"):
                if not have:
                    return None
                found[want[1:-1]] = have
            elif want != have:
                return None
        return found


# ---------------------------------------------------------------- sessions


def _page(default: int = DEFAULT_PAGE) -> Param:
    return Param(
        "limit",
        f"items per page (default {default})",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": default},
    )


CURSOR: Final = Param("cursor", "the next_cursor of the previous page", {"type": "string"})
# A history cursor is the wall time (seconds) the previous page's last session ended at.
HISTORY_CURSOR: Final = attrs.evolve(
    CURSOR, schema={"type": "string", "pattern": r"^[0-9]{1,16}(\.[0-9]{1,17})?$"}
)


async def _list_sessions(api: AdminApi, call: Call) -> Reply:
    status, host, cursor = call.text("status"), call.text("host"), call.text("cursor")
    limit = call.integer("limit", DEFAULT_PAGE)
    handles = sorted(
        (
            h
            for h in api.supervisor.handles()
            if (host is None or h.host_user_id == host) and (cursor is None or h.code > cursor)
        ),
        key=lambda h: h.code,
    )[call.integer("offset", 0) :]
    page: list[SessionSummary] = []
    late: list[str] = []
    examined = 0
    while len(page) < limit and examined < len(handles):  # a status filter may need more
        batch = handles[examined : examined + limit - len(page)]
        examined += len(batch)
        views, timed_out = await _sessions.inspect_all(batch)
        late += timed_out
        page += [SessionSummary.of(v) for v in views if status in (None, v.status)]
    next_cursor = handles[examined - 1].code if examined < len(handles) else None
    return Reply(200, SessionList(sessions=page, next_cursor=next_cursor, timed_out=late))


async def _get_session(api: AdminApi, call: Call) -> Reply:
    code = call.path["code"]
    handle = api.supervisor.lookup(code)
    if handle is not None:
        view = await _inspect(handle)
        if view is not None:
            return Reply(200, view)
    closed = await api.store.closed_session(code)
    if closed is None:
        raise not_found(f"no session {code}")
    return Reply(200, ClosedSessionView.of(closed))


async def _inspect(handle: SessionHandle) -> SessionView | None:
    try:
        return await _sessions.inspect(handle)
    except _sessions.Unanswered as late:
        raise ApiError(504, "timeout", str(late)) from None


async def _close_session(api: AdminApi, call: Call) -> Reply:
    code = call.path["code"]
    handle = api.supervisor.lookup(code)
    try:
        closed = handle is not None and await _sessions.close(handle, "admin")
    except _sessions.Unanswered as late:
        raise ApiError(504, "timeout", str(late)) from None
    if not closed:
        raise not_found(f"no live session {code}")
    logger.info("session %s: closed by an operator", code, extra={"session": code})
    return Reply(200, CloseResult(code=code, reason="admin"))


async def _cleanup_sessions(api: AdminApi, call: Call) -> Reply:
    hours = call.body_as(CleanupRequest).max_inactive_hours
    removed = await _sessions.close_idle(api.supervisor.handles(), hours * 3600)
    for code in removed:
        logger.info("session %s: closed by a cleanup", code, extra={"session": code})
    logger.info("cleanup (idle %sh): %d sessions closed", hours, len(removed))
    return Reply(200, CleanupResult(removed_sessions=removed, count=len(removed)))


async def _reset_sessions(api: AdminApi, call: Call) -> Reply:
    if not call.body_as(ResetRequest).confirm:
        raise ApiError(409, "confirmation_required", 'a reset needs {"confirm": true}')
    closed = await _sessions.close_all(api.supervisor.handles(), "admin_reset")
    logger.warning("reset by an operator: %d sessions closed", len(closed))
    return Reply(200, ResetResult(closed_sessions=closed, count=len(closed)))


async def _user_sessions(api: AdminApi, call: Call) -> Reply:
    user = call.path["user_id"]
    handles = sorted(api.supervisor.handles(), key=lambda h: h.code)
    views, late = await _sessions.inspect_all(handles)
    sessions = [SessionSummary.of(v) for v in views if user == v.host_user_id or user in v.user_ids]
    return Reply(200, UserSessions(user_id=user, sessions=sessions, timed_out=late))


async def _history(api: AdminApi, call: Call) -> Reply:
    limit, cursor = call.integer("limit", DEFAULT_PAGE), call.text("cursor")
    rows = await api.store.history(limit=limit, before=None if cursor is None else float(cursor))
    page = HistoryPage(
        sessions=[ClosedSessionView.of(row) for row in rows],
        next_cursor=repr(rows[-1].ended_wall) if len(rows) == limit else None,
        retention_seconds=api.config.history_retention,
    )
    return Reply(200, page)


# ---------------------------------------------------------------- relations and notify


def _relations(api: AdminApi) -> RelationStore:
    if api.relations is None:
        raise ApiError(501, "not_implemented", "this server keeps no relations")
    return api.relations


@contextlib.contextmanager
def _refused_ids() -> Iterator[None]:
    """The relation store refuses an id (empty, too long; a ward its own guardian): 400."""
    try:
        yield
    except ValueError as error:
        raise ApiError(400, "bad_request", str(error)) from None


async def _list_relations(api: AdminApi, call: Call) -> Reply:
    relations = _relations(api)
    with _refused_ids():
        found = await relations.list(call.text("ward"))
    views = [RelationView(ward=r.ward, guardian=r.guardian, created_at=r.created_at) for r in found]
    return Reply(200, RelationList(relations=views))


async def _add_relation(api: AdminApi, call: Call) -> Reply:
    relations = _relations(api)
    body = call.body_as(RelationBody)
    if body.ward == body.guardian:
        raise ApiError(409, "conflict", "nobody is their own guardian")
    with _refused_ids():
        created = await relations.add(body.ward, body.guardian)
    if created:
        logger.info("relation added: ward %s, guardian %s", body.ward, body.guardian)
        api.on_relations_changed(body.ward)
    added = RelationAdded(ward=body.ward, guardian=body.guardian, created=created)
    return Reply(201 if created else 200, added)


async def _remove_relation(api: AdminApi, call: Call) -> Reply:
    relations = _relations(api)
    body = call.body_as(RelationBody)
    ward, guardian = body.ward, body.guardian
    with _refused_ids():
        removed = await relations.remove(ward, guardian)
    if not removed:
        raise not_found(f"no relation between ward {ward} and guardian {guardian}")
    logger.info("relation removed: ward %s, guardian %s", ward, guardian)
    api.on_relations_changed(ward)
    return Reply(200, RelationRemoved(ward=ward, guardian=guardian, removed=True))


async def _notify_user(api: AdminApi, call: Call) -> Reply:
    if api.notify_user is None:
        raise ApiError(501, "not_implemented", "this server has no user-addressed events")
    user = call.path["user_id"]
    body = call.body_as(NotifyRequest)
    delivered = api.notify_user(user, body.topic, body.data)
    logger.info("notified user %s: %s (%d connections)", user, body.topic, delivered)
    return Reply(200, NotifyResult(user_id=user, topic=body.topic, delivered=delivered))


# ---------------------------------------------------------------- cluster


class ClusterSource(Protocol):
    """What the admin API reads of a cluster node (``cluster.ClusterNode``)."""

    async def view(self) -> dict[str, Any]: ...


async def _cluster(api: AdminApi, call: Call) -> Reply:
    if api.cluster is None:
        raise not_found("this server is not in cluster mode (--cluster)")
    try:
        view = await api.cluster.view()
    except Exception as error:  # Redis is unavailable: the view cannot be read
        raise ApiError(503, "unavailable", f"cannot read the cluster: {error}") from None
    return Reply(200, converter.structure(view, ClusterView))


# ---------------------------------------------------------------- health, metrics, document


async def _healthz(api: AdminApi, call: Call) -> Reply:
    return Reply(200, ALIVE)


async def _readyz(api: AdminApi, call: Call) -> Reply:
    state = api.readiness.state()
    return Reply(200 if state.ready else 503, state)


async def _metrics(api: AdminApi, call: Call) -> Reply:
    if api.metrics is None:
        raise not_found("metrics are off on this server")
    return Reply(200, api.metrics.render(), METRICS_CONTENT_TYPE)


async def _openapi(api: AdminApi, call: Call) -> Reply:
    return Reply(200, api.document)


def operations() -> list[Operation]:
    """Every endpoint of the admin API (the order of the document)."""
    user_id = {"type": "string", "minLength": 1, "maxLength": 256}
    return [
        Operation(
            method="GET",
            path=f"{API}/sessions",
            summary="Live sessions, by code",
            description="Paged by code: `limit`, then `cursor` (the previous page's "
            "`next_cursor`); `offset` skips that many more.",
            handler=_list_sessions,
            response=SessionList,
            errors=(503,),
            query=(
                Param(
                    "status",
                    "only sessions in this status",
                    {"type": "string", "enum": ["active", "hibernating"]},
                ),
                Param("host", "only sessions this user id hosts", {"type": "string"}),
                _page(),
                CURSOR,
                Param("offset", "sessions to skip first", {"type": "integer", "minimum": 0}),
            ),
        ),
        Operation(
            method="POST",
            path=f"{API}/sessions/cleanup",
            summary="Close sessions idle for long (reason admin_cleanup)",
            description="Closes every session with no connected client and no activity for "
            "`max_inactive_hours`.",
            handler=_cleanup_sessions,
            response=CleanupResult,
            errors=(413, 503),
            body=CleanupRequest,
        ),
        Operation(
            method="POST",
            path=f"{API}/sessions/reset",
            summary="Close every session (reason admin_reset)",
            description='Requires `{"confirm": true}`; without it, 409.',
            handler=_reset_sessions,
            response=ResetResult,
            errors=(409, 413, 503),
            body=ResetRequest,
        ),
        Operation(
            method="GET",
            path=f"{API}/sessions/{{code}}",
            summary="One session: live, or closed and still in the history",
            handler=_get_session,
            response=SessionView | ClosedSessionView,
            errors=(404, 503, 504),
        ),
        Operation(
            method="DELETE",
            path=f"{API}/sessions/{{code}}",
            summary="Close a live session (reason admin)",
            handler=_close_session,
            response=CloseResult,
            errors=(404, 503, 504),
        ),
        Operation(
            method="GET",
            path=f"{API}/cluster",
            summary="The cluster: every node incarnation, alive or not, and its sessions",
            description="Cluster mode only (404 otherwise). Session listings are per node; "
            "this view counts the sessions of every node, from Redis.",
            handler=_cluster,
            response=ClusterView,
            errors=(404, 503),
        ),
        Operation(
            method="GET",
            path=f"{API}/users/{{user_id}}/sessions",
            summary="The live sessions a user hosts or holds a seat in",
            handler=_user_sessions,
            response=UserSessions,
            errors=(503,),
        ),
        Operation(
            method="POST",
            path=f"{API}/users/{{user_id}}/notify",
            summary="Send an event to every connection of a user",
            handler=_notify_user,
            response=NotifyResult,
            errors=(413, 501, 503),
            body=NotifyRequest,
        ),
        Operation(
            method="GET",
            path=f"{API}/history",
            summary="Closed sessions, newest first",
            description="Paged: `limit`, then `cursor` (the previous page's `next_cursor`).",
            handler=_history,
            response=HistoryPage,
            errors=(503,),
            query=(_page(), HISTORY_CURSOR),
        ),
        Operation(
            method="GET",
            path=f"{API}/relations",
            summary="Relations between wards and guardians",
            handler=_list_relations,
            response=RelationList,
            errors=(501, 503),
            query=(Param("ward", "only this ward's", user_id),),
        ),
        Operation(
            method="POST",
            path=f"{API}/relations",
            summary="Add a relation (201; 200 when it existed; 409 for a ward as its own guardian)",
            handler=_add_relation,
            response=RelationAdded,
            statuses=(201, 200),
            errors=(409, 413, 501, 503),
            body=RelationBody,
        ),
        Operation(
            method="DELETE",
            path=f"{API}/relations",
            summary="Remove a relation, named by the body",
            handler=_remove_relation,
            response=RelationRemoved,
            errors=(404, 413, 501, 503),
            body=RelationBody,
        ),
        Operation(
            method="GET",
            path=f"{API}/openapi.json",
            summary="This document",
            handler=_openapi,
            response=dict[str, Any],
            auth=False,
            while_draining=True,
        ),
        Operation(
            method="GET",
            path="/healthz",
            summary="The process is alive",
            handler=_healthz,
            response=Health,
            auth=False,
            while_draining=True,
        ),
        Operation(
            method="GET",
            path="/readyz",
            summary="Ready for traffic (200), or not (503, with the reasons)",
            handler=_readyz,
            response=ReadyState,
            statuses=(200, 503),
            auth=False,
            while_draining=True,
        ),
        Operation(
            method="GET",
            path="/metrics",
            summary="Prometheus metrics (docs/operations.md#metrics)",
            handler=_metrics,
            response=str,
            errors=(404,),
            while_draining=True,
            content_type=METRICS_CONTENT_TYPE,
        ),
    ]
