"""The session client: typed requests, an event stream, and reconnection that loses nothing.

One background task owns the link's life: open, ``hello``, ``session:resume`` when it holds a
seat, serve, and on a drop back off (exponential, full jitter) and do it again. The reader
handles every reply and event in arrival order, so ``last_seq`` is exact at every moment and the
``resumed`` notice always precedes the replayed events.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import orjson
import trio

from protocol import CloseCode, Event, decode_event, encode

from ._backoff import Backoff
from ._errors import ConnectionLost, LinkClosed, RequestError
from ._links import Link, Opener, websocket_opener

logger = logging.getLogger(__name__)

EVENT_BUFFER: Final = 10_000  # events held for the application before the reader waits
ABNORMAL_CLOSURE: Final = 1006
_PING: Final = encode({"type": "ping"})
_CLOSE_TIMEOUT: Final = 1.0  # seconds for a graceful close on exit


class ConnectionState(enum.StrEnum):
    """What the client's connection is doing."""

    CONNECTED = "connected"  # a link is up and no seat needed resuming
    RECONNECTING = "reconnecting"  # the link dropped; retrying with backoff
    RESUMED = "resumed"  # a link is up again and the seat was resumed
    LOST = "lost"  # no more retries (gave up, replaced, or the seat is gone)


@attrs.frozen
class ConnectionEvent:
    """A change of connection state, delivered in order with the session's events.

    After ``RESUMED``: ``recovered`` says whether the ``replayed`` missed events follow; when it
    is ``False``, ``snapshot`` holds the session as it is now, to rebuild from. ``seq`` is the
    position after the resume: the replayed events lead up to it, and a seq they do not cover
    is this client's own return (``participantBack``/``resumed``), which it is not sent.
    """

    state: ConnectionState
    recovered: bool | None = None
    replayed: int = 0
    snapshot: dict[str, Any] | None = None
    reason: str = ""
    seq: int | None = None


ClientEvent = Event | ConnectionEvent | dict[str, Any]


@attrs.define
class _Pending:
    kind: str
    done: trio.Event = attrs.Factory(trio.Event)
    reply: dict[str, Any] | None = None


class Client:
    """A connection to a trio-sessions server. Make one with :func:`connect`.

    Requests wait while the client is reconnecting and raise :class:`ConnectionLost` if the link
    drops before their reply (the request may or may not have been applied) or the client has
    given up, and :class:`RequestError` when the server refuses them.

    Events (typed :mod:`protocol` events and :class:`ConnectionEvent`) arrive on
    :attr:`events`, a bounded channel: consume it, or the reader waits and replies stall.
    """

    def __init__(
        self,
        opener: Opener,
        *,
        token: str | None,
        name: str | None,
        backoff: Backoff,
        event_buffer: int,
    ) -> None:
        self.user_id: str | None = None
        self.session_code: str | None = None
        self.participant_id: str | None = None
        self.role: str | None = None
        self.heartbeat_interval = 25.0  # seconds; the server's value once connected
        self.last_seq = 0  # every event up to here has been received (or sent, for own messages)
        self.events: trio.MemoryReceiveChannel[ClientEvent]
        self._events, self.events = trio.open_memory_channel[ClientEvent](event_buffer)
        self._opener = opener
        self._hello = {k: v for k, v in (("token", token), ("name", name)) if v is not None}
        self._backoff = backoff
        self._seat: dict[str, str] | None = None  # resume token and epoch
        self._pending: dict[int, _Pending] = {}
        self._refs = itertools.count(1)
        self._link: Link | None = None
        self._ready = trio.Event()  # set while a link is up (or once the client is lost)
        self._lost: str | None = None
        self._closing = False
        self._close_code = ABNORMAL_CLOSURE
        self._replay_left = 0  # replayed events still to come after a resume reply
        self._replay_seq = 0  # ... and the position they lead to
        self._last_heard = self._last_sent = 0.0
        self.frames_received = 0  # every frame from the server, for simulation figures

    # ---------------------------------------------------------------- requests

    async def request(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Send any request and return its reply's ``data``."""
        while not self._ready.is_set():
            await self._ready.wait()
        if self._lost is not None or self._link is None:
            raise ConnectionLost(self._lost or "not connected")
        return await self._request_on(self._link, kind, fields)

    async def create_session(
        self, state: dict[str, Any] | None = None, *, participants_can_write_state: bool = False
    ) -> dict[str, Any]:
        """Open a session as its host (or get back the one this user hosts)."""
        fields: dict[str, Any] = {"participants_can_write_state": participants_can_write_state}
        if state is not None:
            fields["state"] = state
        return await self.request("session:create", **fields)

    async def join(self, code: str) -> dict[str, Any]:
        """Join a session by code; returns the seat and the session's snapshot."""
        return await self.request("session:join", code=code)

    async def create_room(self, room: str, kind: str = "generic") -> dict[str, Any]:
        """Host: open a room."""
        return await self.request("session:createRoom", room=room, kind=kind)

    async def close_room(self, room: str) -> None:
        """Host: close a room."""
        await self.request("session:closeRoom", room=room)

    async def send(self, room: str, data: Any) -> int:
        """Relay ``data`` to the room's other members; returns the message's ``seq``."""
        return (await self.request("room:message", room=room, data=data))["seq"]

    async def set_state(self, state: dict[str, Any], expected_version: int | None = None) -> int:
        """Replace the session state; returns the new version."""
        return await self._change_state("state:set", expected_version, state=state)

    async def patch_state(self, patch: dict[str, Any], expected_version: int | None = None) -> int:
        """Amend the session state with a JSON merge patch; returns the new version."""
        return await self._change_state("state:patch", expected_version, patch=patch)

    async def _change_state(self, kind: str, expected_version: int | None, **fields: Any) -> int:
        if expected_version is not None:
            fields["expected_version"] = expected_version
        return (await self.request(kind, **fields))["version"]

    async def leave(self) -> None:
        """Give up the seat now (the host leaving closes the session)."""
        await self.request("session:leave")

    async def close(self) -> None:
        """Host: end the session for everyone."""
        await self.request("session:close")

    async def _request_on(self, link: Link, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        ref = next(self._refs)
        pending = self._pending[ref] = _Pending(kind)
        try:
            await self._send(link, encode({"type": kind, "ref": ref, **fields}))
            await pending.done.wait()
        finally:
            self._pending.pop(ref, None)
        reply = pending.reply
        if reply is None:
            raise ConnectionLost(f"the connection dropped before the reply to {kind}")
        if not reply["ok"]:
            error = dict(reply["error"])
            raise RequestError(error.pop("code"), error.pop("message", ""), error)
        return reply["data"]

    async def _send(self, link: Link, frame: str) -> None:
        try:
            await link.send(frame)
        except LinkClosed:
            raise ConnectionLost("the connection dropped") from None
        self._last_sent = trio.current_time()

    # ---------------------------------------------------------------- the link's life

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        attempt = 0
        down_since: float | None = None
        with self._events:
            while True:
                refused: RequestError | None = None
                async with trio.open_nursery() as nursery:
                    try:
                        link = await self._opener(nursery)
                        await self._handshake(link, nursery)
                    except (OSError, ConnectionLost):
                        nursery.cancel_scope.cancel()  # this attempt failed; back off below
                    except RequestError as error:  # the server refused the resume
                        refused = error
                        nursery.cancel_scope.cancel()
                    else:
                        attempt, down_since = 0, None
                        if not started:
                            started = True
                            task_status.started()
                        await trio.sleep_forever()  # until the reader or pinger cancels
                if refused is not None:  # the seat is gone
                    self._seat = None
                    reason = f"resume refused: {refused.code}"
                    if not started:
                        raise ConnectionLost(reason) from refused
                    await self._give_up(reason)
                    return
                self._link = None
                if self._closing:
                    return
                if self._close_code == CloseCode.REPLACED:
                    await self._give_up("replaced by a newer connection")
                    return
                now = trio.current_time()
                if down_since is None:
                    down_since = now
                    if started:
                        await self._events.send(ConnectionEvent(ConnectionState.RECONNECTING))
                limit = self._backoff.give_up_after
                if limit is not None and now - down_since >= limit:
                    if not started:
                        raise ConnectionLost(f"could not connect within {limit}s")
                    await self._give_up(f"no connection for {limit}s")
                    return
                await trio.sleep(self._backoff.delay(attempt))
                attempt += 1

    async def _handshake(self, link: Link, nursery: trio.Nursery) -> None:
        self._close_code = ABNORMAL_CLOSURE
        self._last_heard = self._last_sent = trio.current_time()
        nursery.start_soon(self._read_loop, link, nursery.cancel_scope)
        await self._request_on(link, "hello", self._hello)
        if self._seat is not None:
            fields = {"token": self._seat["token"], "last_seq": self.last_seq}
            await self._request_on(link, "session:resume", {**fields, "epoch": self._seat["epoch"]})
        else:
            await self._events.send(ConnectionEvent(ConnectionState.CONNECTED))
        nursery.start_soon(self._ping_loop, link, nursery.cancel_scope)
        self._link = link
        self._ready.set()

    async def _give_up(self, reason: str) -> None:
        logger.info("client %s: giving up: %s", self.user_id, reason)
        self._lost = reason
        self._ready.set()
        await self._events.send(ConnectionEvent(ConnectionState.LOST, reason=reason))

    async def _ping_loop(self, link: Link, scope: trio.CancelScope) -> None:
        """Send a ping when idle; a link silent for two heartbeat intervals is dead."""
        while True:
            interval = self.heartbeat_interval
            await trio.sleep_until(min(self._last_sent + interval, self._last_heard + 2 * interval))
            now = trio.current_time()
            if now >= self._last_heard + 2 * interval:
                logger.info("client %s: no heartbeat, reconnecting", self.user_id)
                scope.cancel()
                return
            if now >= self._last_sent + interval:
                try:
                    await self._send(link, _PING)
                except ConnectionLost:
                    return

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

    async def _on_reply(self, reply: dict[str, Any]) -> None:
        pending = self._pending.get(reply.get("ref"))  # type: ignore[arg-type]
        if pending is None:
            return
        if reply["ok"]:
            await self._apply(pending.kind, reply["data"])
        pending.reply = reply
        pending.done.set()

    async def _apply(self, kind: str, data: dict[str, Any]) -> None:
        """Take in what a successful reply says about this client's seat and position."""
        if kind == "hello":
            self.user_id = data["user_id"]
            self.heartbeat_interval = float(data["heartbeat_interval"])
        elif kind in ("session:create", "session:join", "session:resume"):
            self.session_code = data["code"]
            self.participant_id = data["participant_id"]
            self.role = data["role"]
            token = data.get("resume_token") or (self._seat or {}).get("token", "")
            self._seat = {"token": token, "epoch": data["epoch"]}
            if kind != "session:resume" or not data["recovered"]:
                self.last_seq = data["seq"]
            if kind == "session:resume":
                self._replay_left, self._replay_seq = data["replayed"], data["seq"]
                if not self._replay_left:
                    self.last_seq = max(self.last_seq, data["seq"])
                recovered = data["recovered"]
                await self._events.send(
                    ConnectionEvent(
                        ConnectionState.RESUMED,
                        recovered=recovered,
                        replayed=data["replayed"],
                        snapshot=None if recovered else data,
                        seq=data["seq"],
                    )
                )
        elif kind == "room:message":
            self.last_seq = max(self.last_seq, data["seq"])
        elif kind == "session:leave":
            self._seat = None

    async def _on_event(self, message: dict[str, Any]) -> None:
        seq = message.get("seq")
        if isinstance(seq, int):
            self.last_seq = max(self.last_seq, seq)
            if self._replay_left:
                self._replay_left -= 1
                if not self._replay_left:
                    self.last_seq = max(self.last_seq, self._replay_seq)
        if message.get("type") == "session:closed":
            self._seat = None
        event = decode_event(message)
        await self._events.send(message if event is None else event)

    async def aclose(self) -> None:
        """Close the link (WebSocket close 1000) and stop reconnecting. Safe to call twice."""
        self._closing = True
        link, self._link = self._link, None
        if link is not None:
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await link.aclose()


@asynccontextmanager
async def connect(
    target: str | Opener,
    *,
    token: str | None = None,
    name: str | None = None,
    backoff: Backoff | None = None,
    event_buffer: int = EVENT_BUFFER,
) -> AsyncIterator[Client]:
    """Connect to ``target`` (a ``ws://`` URL or an opener) and keep connected until exit.

    Returns once the first link is up; raises :class:`ConnectionLost` if that never happens
    within ``backoff.give_up_after``. On exit the link is closed and reconnection stops.
    """
    opener = websocket_opener(target) if isinstance(target, str) else target
    client = Client(
        opener, token=token, name=name, backoff=backoff or Backoff(), event_buffer=event_buffer
    )
    failed: ConnectionLost | None = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(client._run)
        except ConnectionLost as exc:  # raised below, outside the nursery, as itself
            failed = exc
        else:
            try:
                yield client
            finally:
                await client.aclose()
                nursery.cancel_scope.cancel()
    if failed is not None:
        raise failed
