"""The session client: requests, and the reader that applies every reply and event in order.

The reader handles every reply and event in arrival order, so each seat's position
(:mod:`client._seats`) is exact at every moment and a seat's ``resumed`` notice always precedes
its replayed events. The link's life (connect, resume, back off) is :mod:`client._reconnect`.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

import attrs
import orjson
import trio

from protocol import (
    ABNORMAL_CLOSURE,
    REPLY_TYPES,
    AuthReply,
    Empty,
    Event,
    GuardianLiveStarted,
    HelloReply,
    Reply,
    ResumeReply,
    SeatEnded,
    SeatReply,
    SeqReply,
    SessionClosed,
    decode_event,
    decode_reply,
    encode,
)

from ._api import Requests
from ._auth import TokenProvider, Tokens
from ._backoff import Backoff
from ._errors import ConnectionLost, LinkClosed, RequestError
from ._events import ClientEvent, ConnectionEvent, ConnectionState
from ._links import Link, Opener
from ._reconnect import CONNECT_TIMEOUT, Reconnecting
from ._seats import Seat, SeatTracker

logger = logging.getLogger(__name__)

EVENT_BUFFER: Final = 10_000  # events held for the application before the reader waits
_CLOSE_TIMEOUT: Final = 1.0  # seconds for a graceful close on exit


@attrs.define
class _Pending:
    kind: str
    session: str | None  # the ``session`` field the request carried
    done: trio.Event = attrs.Factory(trio.Event)
    data: dict[str, Any] | None = None  # a success's raw ``data``
    reply: Reply | None = None  # ... and its typed form
    error: RequestError | None = None


class Client(Requests, Reconnecting):
    """A connection to a trio-sessions server. Make one with :func:`connect`.

    Requests wait while the client is reconnecting and raise :class:`ConnectionLost` if the link
    drops before their reply (the request may or may not have been applied) or the client has
    given up, and :class:`RequestError` when the server refuses them.

    Events (typed :mod:`protocol` events, notices such as :class:`protocol.SeatEnded`,
    :class:`protocol.GuardianLiveStarted` and :class:`protocol.UserNotice`, and
    :class:`ConnectionEvent`) arrive on :attr:`events`, a bounded channel: consume it, or the
    reader waits and replies stall. :attr:`seats` holds the seats this client has taken, and
    those the server gave it (a guardian's seat in a ward's live session).
    """

    def __init__(
        self,
        opener: Opener,
        *,
        token: str | None,
        name: str | None,
        backoff: Backoff,
        event_buffer: int,
        connect_timeout: float = CONNECT_TIMEOUT,
        on_event: Callable[[ClientEvent], None] | None = None,
        token_provider: TokenProvider | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if token is not None and token_provider is not None:
            raise ValueError("pass token or token_provider, not both")
        self.user_id: str | None = None
        self.heartbeat_interval = 25.0  # seconds; the server's value once connected
        self.seats = SeatTracker()
        self.events: trio.MemoryReceiveChannel[ClientEvent]
        self._events, self.events = trio.open_memory_channel[ClientEvent](event_buffer)
        self._handler = on_event  # the application's, instead of the events channel
        self._opener = opener
        self._hello = {} if name is None else {"name": name}
        self._tokens = Tokens(token, token_provider)
        self._wall = wall  # only to read the server's expires_at; timers run on Trio's clock
        self._refused: RequestError | None = None
        self._expires = self._refresh_at = math.inf
        self._refresh_timer: trio.CancelScope | None = None
        self._backoff = backoff
        self._connect_timeout = connect_timeout
        self._pending: dict[int, _Pending] = {}
        self._refs = itertools.count(1)
        self._link: Link | None = None
        self._ready = trio.Event()  # set while a link is up (or once the client is lost)
        self._lost: str | None = None
        self._closing = False
        self._close_code = ABNORMAL_CLOSURE
        self._last_heard = self._last_sent = 0.0
        self.frames_received = 0  # every frame from the server, for simulation figures

    # ---------------------------------------------------------------- the latest seat

    def _seat(self) -> Seat | None:
        return self.seats.get(None)

    @property
    def session_code(self) -> str | None:
        """The code of the only (or latest) session this client is seated in."""
        return None if (seat := self._seat()) is None else seat.code

    @property
    def participant_id(self) -> str | None:
        """This client's participant id in that session."""
        return None if (seat := self._seat()) is None else seat.participant_id

    @property
    def role(self) -> str | None:
        """``host`` or ``participant`` in that session."""
        return None if (seat := self._seat()) is None else seat.role

    @property
    def last_seq(self) -> int:
        """Every event of that session up to here has been received (or sent, if its own)."""
        return 0 if (seat := self._seat()) is None else seat.last_seq

    # ---------------------------------------------------------------- requests

    async def request(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Send any request and return its reply's ``data`` as a dict."""
        pending = await self._request_on(await self._current_link(), kind, fields)
        return pending.data or {}

    async def refresh_token(self, token: str) -> AuthReply:
        """Hand the server a fresh token for the same user before the current one expires
        (``auth:refresh``); with a fixed ``token`` it is also the token of every later
        ``hello`` (a ``token_provider`` is asked anew for each).

        With a ``token_provider`` the client refreshes by itself. Raises :class:`RequestError`
        (``unauthorized``: a bad token; ``forbidden``: another user's) and then the current
        token still runs out when it would have.
        """
        reply = await self._typed(AuthReply, "auth:refresh", {"token": token})
        self._tokens.token = token
        return reply

    async def _call(self, kind: str, fields: dict[str, Any]) -> Reply:
        pending = await self._request_on(await self._current_link(), kind, fields)
        assert pending.reply is not None
        return pending.reply

    async def _current_link(self) -> Link:
        while not self._ready.is_set():
            await self._ready.wait()
        if self._lost is not None or self._link is None:
            raise ConnectionLost(self._lost or "not connected")
        return self._link

    async def _request_on(self, link: Link, kind: str, fields: dict[str, Any]) -> _Pending:
        ref = next(self._refs)
        pending = self._pending[ref] = _Pending(kind, fields.get("session"))
        try:
            await self._send(link, encode({"type": kind, "ref": ref, **fields}))
            await pending.done.wait()
        finally:
            self._pending.pop(ref, None)
        if pending.error is not None:
            raise pending.error
        if pending.data is None:
            raise ConnectionLost(f"the connection dropped before the reply to {kind}")
        return pending

    async def _send(self, link: Link, frame: str) -> None:
        try:
            await link.send(frame)
        except LinkClosed:
            raise ConnectionLost("the connection dropped") from None
        self._last_sent = trio.current_time()

    # ---------------------------------------------------------------- the reader

    async def _read_loop(self, link: Link, scope: trio.CancelScope) -> None:
        try:
            while True:
                message = orjson.loads(await link.receive())
                self._last_heard = trio.current_time()
                self.frames_received += 1
                kind = message.get("type")
                if kind == "reply":
                    await self._on_reply(message)
                elif kind != "pong":
                    await self._on_event(message)
        except LinkClosed as closed:
            self._close_code = closed.code
        finally:
            if self._ready.is_set():  # an unset one may have waiters: keep it for them
                self._ready = trio.Event()
            for pending in self._pending.values():
                pending.done.set()  # without a reply: ConnectionLost
            scope.cancel()

    async def _on_reply(self, message: dict[str, Any]) -> None:
        pending = self._pending.get(message.get("ref"))  # type: ignore[arg-type]
        if pending is None:
            return
        if message.get("ok"):
            data = message.get("data") or {}
            if pending.kind in REPLY_TYPES:
                try:
                    pending.reply = decode_reply(pending.kind, data)
                except Exception as exc:  # a reply this client cannot read: say so, go on
                    pending.error = RequestError("bad_reply", repr(exc), {})
                else:
                    await self._apply(pending, pending.reply)
            pending.data = data
        else:
            error = dict(message.get("error") or {})
            pending.error = RequestError(error.pop("code", ""), error.pop("message", ""), error)
        pending.done.set()

    async def _apply(self, pending: _Pending, reply: Reply) -> None:
        """Take in what a successful reply says about this client's seats and positions."""
        if isinstance(reply, HelloReply):
            self.user_id = reply.user_id
            self.heartbeat_interval = reply.heartbeat_interval
            self._arm_expiry(reply.expires_at)
        elif isinstance(reply, AuthReply):
            self._arm_expiry(reply.expires_at)
        elif isinstance(reply, SeatReply):
            self.seats.seated(reply)
        elif isinstance(reply, ResumeReply):
            if self.seats.resumed(reply) is not None:
                event = ConnectionEvent(
                    ConnectionState.RESUMED,
                    recovered=reply.recovered,
                    replayed=reply.replayed,
                    snapshot=None if reply.recovered else reply,
                    seq=reply.seq,
                    session=reply.code,
                )
                await self._emit(event)
        elif isinstance(reply, SeqReply):
            self.seats.own_message(pending.session, reply.seq)
        elif isinstance(reply, Empty) and pending.kind == "session:leave":
            self.seats.ended(pending.session)

    async def _on_event(self, message: dict[str, Any]) -> None:
        try:
            event = decode_event(message)
        except Exception as exc:  # a known type with fields this client cannot read: pass it on
            logger.warning("client %s: unreadable %s: %r", self.user_id, message.get("type"), exc)
            event = None
        if isinstance(event, Event):
            self.seats.observe(event.session, event.seq)
            if isinstance(event, SessionClosed):
                self.seats.ended(event.session)
        elif isinstance(event, SeatEnded):
            self.seats.ended(event.session)
        elif isinstance(event, GuardianLiveStarted):
            self.seats.seated(event)  # tracked, and resumed after a drop, as a joined seat
        elif event is None:  # an event type this client does not know: still count its seq
            session, seq = message.get("session"), message.get("seq")
            if isinstance(session, str) and isinstance(seq, int):
                self.seats.observe(session, seq)
        await self._emit(message if event is None else event)

    async def _emit(self, event: ClientEvent) -> None:
        """Hand an event to the application: to ``on_event`` if given, else on :attr:`events`."""
        if self._handler is None:
            await self._events.send(event)
        else:
            self._handler(event)

    async def aclose(self) -> None:
        """Close the link (WebSocket close 1000) and stop reconnecting. Safe to call twice."""
        self._closing = True
        link, self._link = self._link, None
        if link is not None:
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await link.aclose()
