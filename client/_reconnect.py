"""The link's life: open, ``hello``, resume every seat, serve, and on a drop back off and again.

Each step of a (re)connect (opening the link with its WebSocket handshake, ``hello``, each
``session:resume``) must finish within ``connect_timeout`` on Trio's clock; a step that does not,
or fails, sends the client back into backoff (exponential, full jitter). A 4002 close (the seat
was taken over elsewhere), every seat's resume being refused, or ``give_up_after`` without a
link end it for good with a ``lost`` :class:`ConnectionEvent` carrying a :class:`LostReason`.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

import trio

from protocol import ABNORMAL_CLOSURE, CloseCode, ErrorCode, encode

from ._backoff import Backoff
from ._errors import ConnectionLost, RequestError
from ._events import ClientEvent, ConnectionEvent, ConnectionState, LostReason
from ._links import Link, Opener
from ._seats import Seat, SeatTracker

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 10.0  # seconds each step of a (re)connect may take
MAX_BUSY_RETRIES: Final = 5  # resumes refused with seat_busy before the attempt backs off
# Idle share of a heartbeat interval after which the client pings: early enough that its ping
# reaches the server before the server's own timer (a full interval of silence) makes it send a
# WebSocket ping, which would cost a ping, a pong and two wake-ups more per interval.
PING_AFTER: Final = 0.8
# Idle pings are due on a grid of this many seconds (rounded up), like a kernel's timer slack:
# clients whose pings fall due close together wake together, which in a simulation of
# thousands of clients saves most of the scheduler passes heartbeats would otherwise cost.
PING_SLACK: Final = 1.0  # seconds; well under (1 - PING_AFTER) of an interval
_PING: Final = encode({"type": "ping"})


class Reconnecting:
    """The reconnect loop of :class:`client.Client` (which provides the reader and requests)."""

    user_id: str | None
    heartbeat_interval: float
    seats: SeatTracker
    _events: trio.MemorySendChannel[ClientEvent]
    _opener: Opener
    _hello: dict[str, str]
    _backoff: Backoff
    _connect_timeout: float
    _link: Link | None
    _ready: trio.Event
    _lost: str | None
    _closing: bool
    _close_code: int
    _last_heard: float
    _last_sent: float

    async def _request_on(self, link: Link, kind: str, fields: dict[str, Any]) -> object:
        raise NotImplementedError

    async def _send(self, link: Link, frame: str) -> None:
        raise NotImplementedError

    async def _read_loop(self, link: Link, scope: trio.CancelScope) -> None:
        raise NotImplementedError

    async def _emit(self, event: ClientEvent) -> None:
        raise NotImplementedError

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        attempt = 0
        down_since: float | None = None
        with self._events:
            while True:
                up = False
                async with trio.open_nursery() as nursery:
                    up = await self._attempt(nursery)
                    if up:
                        attempt, down_since = 0, None
                        if not started:
                            started = True
                            task_status.started()
                        await trio.sleep_forever()  # until the reader or pinger cancels
                    nursery.cancel_scope.cancel()  # this attempt failed; back off below
                self._link = None
                if self._closing or self._lost is not None:
                    return
                if self._close_code == CloseCode.REPLACED:
                    reason = "replaced by a newer connection"
                    await self._give_up(LostReason.REPLACED, reason)
                    return
                now = trio.current_time()
                if down_since is None:
                    down_since = now
                    if started:
                        await self._emit(ConnectionEvent(ConnectionState.RECONNECTING))
                limit = self._backoff.give_up_after
                if limit is not None and now - down_since >= limit:
                    if not started:
                        raise ConnectionLost(f"could not connect within {limit}s")
                    await self._give_up(LostReason.GAVE_UP, f"no connection for {limit}s")
                    return
                await trio.sleep(self._backoff.delay(attempt))
                attempt += 1

    async def _attempt(self, nursery: trio.Nursery) -> bool:
        """Open a link, say hello and resume every seat; ``True`` once the link serves.

        Each step gets ``connect_timeout`` on Trio's clock (the scope's deadline moves on as
        each step begins): a server that accepts TCP and then stays silent, or closes without
        answering, costs one timeout and then a backoff, never a hang.
        """
        with trio.move_on_after(self._connect_timeout) as step:
            try:
                link = await self._opener(nursery)
                self._close_code = ABNORMAL_CLOSURE
                self._last_heard = self._last_sent = trio.current_time()
                nursery.start_soon(self._read_loop, link, nursery.cancel_scope)
                step.deadline = trio.current_time() + self._connect_timeout
                await self._request_on(link, "hello", self._hello)
                if not await self._resume_all(link, step):
                    return False
            except (OSError, ConnectionLost) as error:
                logger.info("client %s: connecting failed: %s", self.user_id, error)
                return False
        if step.cancelled_caught:
            logger.info(
                "client %s: a connect step took over %ss", self.user_id, self._connect_timeout
            )
            return False
        nursery.start_soon(self._ping_loop, link, nursery.cancel_scope)
        self._link = link
        self._ready.set()
        return True

    async def _resume_all(self, link: Link, step: trio.CancelScope) -> bool:
        """One ``session:resume`` per seat held; ``False`` when the client gave up."""
        seats = list(self.seats)
        if not seats:
            await self._emit(ConnectionEvent(ConnectionState.CONNECTED))
            return True
        refused: list[tuple[Seat, RequestError]] = []
        for seat in seats:
            error = await self._resume(link, seat, step)
            if error is not None and self.seats.ended(seat.code) is not None:
                refused.append((seat, error))
        for seat, error in refused:
            reason = f"resume refused: {error.code}"
            if not len(self.seats):  # every seat is gone: nothing left to reconnect for
                await self._give_up(LostReason.RESUME_REFUSED, reason, error.code)
                return False
            event = ConnectionEvent(
                ConnectionState.SEAT_LOST,
                reason=reason,
                session=seat.code,
                cause=LostReason.RESUME_REFUSED,
                error_code=error.code,
            )
            await self._emit(event)
        return True

    async def _resume(self, link: Link, seat: Seat, step: trio.CancelScope) -> RequestError | None:
        """Resume one seat; the refusal if the server refused it for good.

        ``seat_busy`` (the seat was just taken over elsewhere) is retried after the server's
        ``retry_after_ms``, on Trio's clock; past ``MAX_BUSY_RETRIES`` the attempt fails.
        """
        for _ in range(MAX_BUSY_RETRIES + 1):
            step.deadline = trio.current_time() + self._connect_timeout
            try:
                await self._request_on(link, "session:resume", seat.resume_fields())
            except RequestError as error:
                if error.code != ErrorCode.SEAT_BUSY:
                    return error
                delay = float(error.details.get("retry_after_ms", 0)) / 1000
                logger.info(
                    "client %s: seat in %s busy, retry in %ss", self.user_id, seat.code, delay
                )
                step.deadline = trio.current_time() + delay + self._connect_timeout
                await trio.sleep(delay)
            else:
                return None
        raise ConnectionLost(f"seat in {seat.code} still busy")

    async def _give_up(self, cause: LostReason, reason: str, error_code: str | None = None) -> None:
        logger.info("client %s: giving up: %s", self.user_id, reason)
        self._lost = reason
        self._ready.set()
        event = ConnectionEvent(
            ConnectionState.LOST, reason=reason, cause=cause, error_code=error_code
        )
        await self._emit(event)

    async def _ping_loop(self, link: Link, scope: trio.CancelScope) -> None:
        """Send a ping when idle; a link silent for two heartbeat intervals is dead."""
        while True:
            interval = self.heartbeat_interval
            idle = PING_AFTER * interval
            due = math.ceil((self._last_sent + idle) / PING_SLACK) * PING_SLACK
            await trio.sleep_until(min(due, self._last_heard + 2 * interval))
            now = trio.current_time()
            if now >= self._last_heard + 2 * interval:
                logger.info("client %s: no heartbeat, reconnecting", self.user_id)
                scope.cancel()
                return
            if now >= self._last_sent + idle:
                try:
                    await self._send(link, _PING)
                except ConnectionLost:
                    return
