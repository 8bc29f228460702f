"""The link's life: open, ``hello``, resume every seat, serve, and on a drop back off and again.

Each step of a (re)connect (getting a token from the provider, opening the link with its
WebSocket handshake, ``hello``, each ``session:resume``) must finish within ``connect_timeout``
on Trio's clock; a step that does not, or fails, sends the client back into backoff
(exponential, full jitter; ``Backoff.busy`` longer after a 1013 "try again later").

What ends it for good, with a ``lost`` :class:`ConnectionEvent` carrying a :class:`LostReason`
(or, before the first link, :class:`ConnectionLost` out of :func:`client.connect`): a 4002 close
(the seat was taken over elsewhere); a refused token (4004), at once with a fixed token, after
one more try with a fresh one from the token provider; a 4005 (token expired) without a token
provider; any other refused ``hello``; every seat's resume being refused; ``give_up_after``
without a link. A 4005 with a provider is a drop like any other: reconnect with a fresh token
and resume.

While a link serves, the token is refreshed (``auth:refresh``) after ``REFRESH_AT`` of its
remaining life, with a new token from the provider.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Final

import trio

from protocol import ABNORMAL_CLOSURE, CloseCode, ErrorCode, encode

from ._auth import Tokens, TokenUnavailable, refresh_deadline, seconds_left
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
    _hello: dict[str, str]  # the hello's fields but the token (its ``name``)
    _tokens: Tokens
    _wall: Callable[[], float]
    _refused: RequestError | None  # the last attempt's hello refusal
    _expires: float  # Trio time the token runs out (inf: never)
    _refresh_at: float  # Trio time to send auth:refresh (inf: never)
    _refresh_timer: trio.CancelScope | None  # the refresher's wait, whose deadline moves
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
        new_token_tried = False  # after a refused token: the provider's next one had its try
        with self._events:
            while True:
                up = False
                async with trio.open_nursery() as nursery:
                    up = await self._attempt(nursery)
                    if up:
                        attempt, down_since, new_token_tried = 0, None, False
                        if not started:
                            started = True
                            task_status.started()
                        await trio.sleep_forever()  # until the reader or pinger cancels
                    nursery.cancel_scope.cancel()  # this attempt failed; back off below
                self._link = None
                if self._closing or self._lost is not None:
                    return
                stop = self._final(new_token_tried)
                if stop is None and self._unauthorized():
                    new_token_tried = True  # the provider gets one more try
                now = trio.current_time()
                just_dropped = down_since is None
                if down_since is None:
                    down_since = now
                limit = self._backoff.give_up_after
                if stop is None and limit is not None and now - down_since >= limit:
                    stop = LostReason.GAVE_UP, f"no connection for {limit}s", None
                if stop is not None:
                    cause, reason, error_code = stop
                    if not started:
                        raise ConnectionLost(reason, cause)
                    await self._give_up(cause, reason, error_code)
                    return
                if just_dropped and started:
                    event = ConnectionEvent(ConnectionState.RECONNECTING, code=self._close_code)
                    await self._emit(event)
                busy = self._close_code == CloseCode.TRY_AGAIN_LATER or (
                    self._refused is not None and self._refused.code == ErrorCode.RATE_LIMITED
                )
                await trio.sleep(self._backoff.delay(attempt, busy=busy))
                attempt += 1

    def _unauthorized(self) -> bool:
        """The last link ended because the server refused its token (4004)."""
        refused = self._refused
        return self._close_code == CloseCode.UNAUTHORIZED or (
            refused is not None and refused.code == ErrorCode.UNAUTHORIZED
        )

    def _final(self, new_token_tried: bool) -> tuple[LostReason, str, str | None] | None:
        """Why the link that just ended means giving up for good; ``None`` to reconnect."""
        refused = self._refused
        if self._close_code == CloseCode.REPLACED:
            return LostReason.REPLACED, "replaced by a newer connection", None
        if self._unauthorized():
            if self._tokens.provider is not None and not new_token_tried:
                return None  # reconnect once with a fresh token from the provider
            why = refused.message if refused is not None else "token refused"
            return LostReason.UNAUTHORIZED, f"hello refused: {why}", ErrorCode.UNAUTHORIZED
        if refused is not None and refused.code != ErrorCode.RATE_LIMITED:
            reason = f"hello refused: {refused.code}: {refused.message}"
            return LostReason.HELLO_REFUSED, reason, refused.code
        if self._close_code == CloseCode.TOKEN_EXPIRED and self._tokens.provider is None:
            reason = "token expired, and no token provider to get a fresh one"
            return LostReason.TOKEN_EXPIRED, reason, None
        return None

    async def _attempt(self, nursery: trio.Nursery) -> bool:
        """Open a link, say hello and resume every seat; ``True`` once the link serves.

        Each step gets ``connect_timeout`` on Trio's clock (the scope's deadline moves on as
        each step begins): a server that accepts TCP and then stays silent, or closes without
        answering, costs one timeout and then a backoff, never a hang.
        """
        self._close_code, self._refused = ABNORMAL_CLOSURE, None
        with trio.move_on_after(self._connect_timeout) as step:
            try:
                token = await self._tokens.fresh()
                step.deadline = trio.current_time() + self._connect_timeout
                link = await self._opener(nursery)
                self._last_heard = self._last_sent = trio.current_time()
                nursery.start_soon(self._read_loop, link, nursery.cancel_scope)
                step.deadline = trio.current_time() + self._connect_timeout
                hello = self._hello if token is None else {"token": token, **self._hello}
                try:
                    await self._request_on(link, "hello", hello)
                except RequestError as refused:  # the server closes the link after it
                    logger.info("client: hello refused: %s", refused)
                    self._refused = refused
                    return False
                if not await self._resume_all(link, step):
                    return False
            except (OSError, ConnectionLost, TokenUnavailable) as error:
                logger.info("client %s: connecting failed: %s", self.user_id, error)
                return False
        if step.cancelled_caught:
            logger.info(
                "client %s: a connect step took over %ss", self.user_id, self._connect_timeout
            )
            return False
        nursery.start_soon(self._ping_loop, link, nursery.cancel_scope)
        nursery.start_soon(self._refresh_loop, link)
        self._link = link
        self._ready.set()
        return True

    async def _resume_all(self, link: Link, step: trio.CancelScope) -> bool:
        """One ``session:resume`` per seat held; ``False`` when the client gave up.

        Each resumed seat is announced by a ``RESUMED`` event (emitted as its reply is read);
        when none was, a ``CONNECTED`` event says the link is up.
        """
        resumed = 0
        refused: list[tuple[Seat, RequestError]] = []
        for seat in list(self.seats):
            # A guardian's seat may be back already: the server seats a guardian's connection
            # in its wards' live sessions at hello, with a new token (guardian:liveStarted),
            # which also makes the resume with the old token fail: that refusal is no loss.
            if self.seats.get(seat.code) is not seat:
                continue
            error = await self._resume(link, seat, step)
            if error is None:
                resumed += 1
            elif self.seats.drop(seat):
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
        if not resumed:
            await self._emit(ConnectionEvent(ConnectionState.CONNECTED))
        return True

    async def _resume(self, link: Link, seat: Seat, step: trio.CancelScope) -> RequestError | None:
        """Resume one seat; the refusal if the server refused it for good.

        ``seat_busy`` (the seat was just taken over elsewhere) and ``unavailable`` (a cluster
        recovering from a Redis outage) are retried after the server's ``retry_after_ms``, on
        Trio's clock; past ``MAX_BUSY_RETRIES`` the attempt fails (and the client reconnects).
        """
        for _ in range(MAX_BUSY_RETRIES + 1):
            step.deadline = trio.current_time() + self._connect_timeout
            try:
                await self._request_on(link, "session:resume", seat.resume_fields())
            except RequestError as error:
                if error.code not in (ErrorCode.SEAT_BUSY, ErrorCode.UNAVAILABLE):
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

    # ---------------------------------------------------------------- token expiry

    def _arm_expiry(self, expires_at: str | None) -> None:
        """The server says the connection's token runs out at ``expires_at`` (``None``: never):
        time the refresh (with a token provider) on Trio's clock."""
        now = trio.current_time()
        if expires_at is None:
            self._expires = self._refresh_at = math.inf
        else:
            left = seconds_left(expires_at, self._wall)
            self._expires = now + left
            self._refresh_at = math.inf
            if self._tokens.provider is not None:
                self._refresh_at = refresh_deadline(now, left)
        if self._refresh_timer is not None:
            self._refresh_timer.deadline = self._refresh_at

    async def _refresh_loop(self, link: Link) -> None:
        """Send ``auth:refresh`` with a fresh token from the provider whenever one is due."""
        while True:
            with trio.CancelScope(deadline=self._refresh_at) as timer:
                self._refresh_timer = timer
                await trio.sleep_forever()
            self._refresh_timer = None
            self._refresh_at = math.inf  # re-armed by the reply, or by a retry below
            try:
                with trio.fail_after(self._connect_timeout):  # a provider that hangs is a failure
                    token = await self._tokens.fresh()
                assert token is not None  # only a provider arms a refresh
                await self._request_on(link, "auth:refresh", {"token": token})
            except (RequestError, TokenUnavailable, trio.TooSlowError) as error:
                now = trio.current_time()
                self._refresh_at = refresh_deadline(now, self._expires - now, retry=True)
                logger.warning(
                    "client %s: token refresh failed (%s); %s",
                    self.user_id,
                    error,
                    "retrying"
                    if self._refresh_at < math.inf
                    else "the link will close at expiry (4005) and reconnect",
                )
            except ConnectionLost:
                return  # the link is gone; the next one says hello with a fresh token

    # ---------------------------------------------------------------- the end

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
