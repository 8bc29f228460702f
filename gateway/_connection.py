"""One task group per client connection: the reader (which routes) and the heartbeat.

The reader parses frames into typed requests and routes them: ``hello`` and ``ping`` it answers
itself, ``session:create``/``join``/``resume`` go to the supervisor's registry, the rest to the
session named by the request (or the only one the connection is seated in). It *awaits* the
actor's inbox, so a flooding client is back-pressured.

Frames leave only through the transport's one non-blocking queue (:meth:`Transport.send_nowait`);
a refusal means the client does not keep up, and it is closed as a slow consumer (4008).

Replies leave in request order: a request answered here (a decode error, a rate limit, a ping)
first waits until every request already routed has been answered (see ``_router.py``).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Final

import orjson
import trio

from protocol import (
    MAX_REF_LENGTH,
    AuthRefresh,
    AuthReply,
    CloseCode,
    Empty,
    ErrorCode,
    Hello,
    HelloReply,
    LiveStart,
    Ping,
    ProtocolError,
    Ref,
    Reply,
    Request,
    SeatEnded,
    SessionCreate,
    SessionJoin,
    SessionRequest,
    SessionResume,
    decode_request,
    encode,
    encode_error,
    encode_event,
    encode_reply,
)
from transport import SendBufferFull, TokenBucket, Transport, TransportClosed

from ._auth import AuthError, Identity
from ._router import Router

if TYPE_CHECKING:
    from actors import SessionHandle

    from ._gateway import Gateway

logger = logging.getLogger(__name__)

CLEANUP_TIMEOUT: Final = 5.0  # seconds to tell the sessions and finish the closing handshake
# On shutdown the transport's own reader is cancelled too, so the closing handshake cannot
# complete: send the close frame and give up waiting almost at once.
SHUTDOWN_CLOSE_TIMEOUT: Final = 0.1  # seconds
DEAD_LINK_CLOSE_TIMEOUT: Final = 1.0  # seconds for a best-effort 4003 on a silent link
SERVER_NAME: Final = "trio-sessions/0.2"
_PONG: Final = encode({"type": "pong"})


class Connection:
    """Serves one client link. Implements :class:`actors.Peer` for the session actors."""

    # Thousands of these live at once: no per-instance __dict__.
    __slots__ = (
        "_address",
        "_bucket",
        "_close_reason",
        "_closing",
        "_config",
        "_counters",
        "_expires",
        "_flooding",
        "_gateway",
        "_join_failures",
        "_last_heard",
        "_link_dead",
        "_router",
        "_scope",
        "_transport",
        "_verified",
        "anonymous",
        "connection_id",
        "name",
        "user_id",
    )

    def __init__(self, transport: Transport, gateway: Gateway) -> None:
        config = gateway.config
        self.connection_id = "c_" + gateway.env.token_hex(8)
        self.user_id = ""
        self.name = "guest"
        self.anonymous = False
        self._verified = False  # user_id comes from a token (verified, or opaque in dev mode)
        self._transport = transport
        self._gateway = gateway
        self._config = config
        self._counters = gateway.counters
        self._address = gateway.proxies.client_address(
            transport.client_host, transport.forwarded_for
        )
        self._expires = math.inf  # Trio time the hello token expires
        self._join_failures = 0
        self._router = Router(
            gateway.supervisor, config.max_sessions_per_connection, gateway.locate
        )
        self._closing = False
        self._link_dead = False  # heartbeat expired: no closing handshake can succeed
        # Kept unless the link ends another way: only an outside cancel (shutdown) leaves it.
        self._close_reason: tuple[int, str] = (CloseCode.SERVICE_RESTART, "server restarting")
        self._scope = trio.CancelScope()
        self._last_heard = trio.current_time()
        self._bucket = TokenBucket(config.rate_limit, config.rate_burst)
        self._flooding = TokenBucket(config.rate_limit, config.rate_burst)  # drained by refusals

    # ---------------------------------------------------------------- Peer

    def deliver(self, frame: str) -> bool:
        if self._closing:
            return False
        self._counters.frames_sent += 1
        if self._transport.send_nowait(frame):
            return True
        if not self._transport.gone:  # refused while the link is up: too slow
            self._slow_consumer()
        return False

    def reply(self, ref: Ref, data: Reply) -> None:
        if ref is not None:
            self.deliver(encode_reply(ref, data))

    def reply_error(self, ref: Ref, error: ProtocolError) -> None:
        self._counters.count_error(error.code)
        self.deliver(encode_error(ref, error))

    def command_done(self) -> None:
        self._router.command_done()

    def seat_granted(self, session: SessionHandle, participant_id: str) -> bool:
        return not self._closing and self._router.granted(session, participant_id)

    def seat_ended(self, code: str, reason: str, close: CloseCode | None = None) -> None:
        seats = self._router.seats
        if seats.ended(code, reason) is None or close is None:
            return
        if close == CloseCode.SERVICE_RESTART:  # the session moved: resume every seat anew
            self._close(close, f"session {code} {reason}")
        elif len(seats):
            self.deliver(encode_event(SeatEnded(session=code, reason=reason)))
        else:
            self._close(close, f"seat {reason}")

    def close_link(self, code: int, reason: str) -> None:
        """Close this connection with ``code`` once what is queued is sent (cluster mode: a
        session it is seated in lost its node, so its client must reconnect and resume)."""
        self._close(code, reason)

    # ---------------------------------------------------------------- closing

    def _close(self, code: int, reason: str) -> None:
        """Stop serving; the link then ends with ``code`` after what is queued (``_end_link``)."""
        if self._closing:
            return
        self._closing = True
        self._close_reason = (code, reason)
        self._scope.cancel()

    def _slow_consumer(self) -> None:
        logger.warning(
            "connection %s: send buffer full, closing slow consumer",
            self.connection_id,
            extra=self._log_fields(),
        )
        self._counters.slow_consumers += 1
        self._close(CloseCode.SLOW_CONSUMER, "slow consumer: send buffer full")

    # ---------------------------------------------------------------- tasks

    async def serve(self) -> None:
        """Serve the link until it closes. Always ends the link (close frame or abort).

        One task: the reader, which also keeps the heartbeat (a quiet link is pinged, a silent
        one dropped), so an idle connection costs no task of its own beyond this one.
        """
        guard = self._gateway.guard
        refusal = guard.admit_connection(self._address)
        if refusal is not None:
            logger.warning("refused a connection: %s", refusal, extra={"client": self._address})
            self._close(CloseCode.TRY_AGAIN_LATER, refusal)
            await self._end_link()
            return
        self._counters.open += 1
        self._counters.accepted += 1
        try:
            with self._scope:
                await self._read_loop()
        except Exception:
            self._close_reason = (CloseCode.INTERNAL_ERROR, "internal error")
            raise
        finally:
            self._closing = True
            with trio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                await self._router.leave_all(self)
            await self._end_link()
            self._counters.open -= 1
            self._forget()

    def _forget(self) -> None:
        """Undo what the hello registered, and the connection's count against its address."""
        gateway = self._gateway
        gateway.guard.connection_closed(self._address)
        if self.user_id:
            gateway.directory.remove(self)
            if self._verified:
                gateway.guard.user_closed(self.user_id)

    async def _end_link(self) -> None:
        code, reason = self._close_reason
        if self._link_dead:
            wait = DEAD_LINK_CLOSE_TIMEOUT
        elif code == CloseCode.SERVICE_RESTART:
            wait = SHUTDOWN_CLOSE_TIMEOUT
        else:
            wait = CLEANUP_TIMEOUT
        with trio.move_on_after(wait, shield=True) as scope:
            await self._transport.aclose(code, reason)
        if scope.cancelled_caught:
            with trio.CancelScope(shield=True):
                await self._transport.abort()

    # ---------------------------------------------------------------- reading

    async def _next_frame(self) -> str | bytes | None:
        """The next message, pinging the link once it has been quiet for a heartbeat interval;
        ``None`` once it ends, or is silent for two intervals (heartbeat timeout, 4003), or its
        token expires (4005)."""
        transport, interval = self._transport, self._config.heartbeat_interval
        pinged = False
        while True:
            # CancelScope itself rather than move_on_at: a generator-based context manager per
            # message cost about 3% of the server's time under fan-out.
            heartbeat = self._last_heard + (2 if pinged else 1) * interval
            with trio.CancelScope(deadline=min(heartbeat, self._expires)):
                try:
                    return await transport.receive()
                except SendBufferFull:
                    self._slow_consumer()
                    return None
                except TransportClosed:
                    return None
            if trio.current_time() >= self._expires:
                logger.info(
                    "connection %s: token expired", self.connection_id, extra=self._log_fields()
                )
                self._close(CloseCode.TOKEN_EXPIRED, "token expired")
                return None
            if transport.heard_at > self._last_heard:  # a pong (or a frame) came meanwhile
                self._last_heard, pinged = transport.heard_at, False
            elif not pinged:
                pinged = True
                if not transport.ping_nowait():
                    continue  # over budget: the next receive says so
            else:
                logger.info(
                    "connection %s: no heartbeat, dropping it",
                    self.connection_id,
                    extra=self._log_fields(),
                )
                self._counters.heartbeat_timeouts += 1
                self._link_dead = True
                self._close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                return None

    async def _receive(self) -> tuple[Ref, Request | ProtocolError] | None:
        """The next decoded frame, or ``None`` once the connection is ending."""
        frame = await self._next_frame()
        if frame is None:
            return None
        self._last_heard = trio.current_time()
        self._counters.frames_received += 1
        if isinstance(frame, bytes):
            return None, ProtocolError(ErrorCode.BAD_REQUEST, "binary frames are not accepted")
        limit = self._config.max_message_size
        if len(frame) > limit or (4 * len(frame) > limit and len(frame.encode()) > limit):
            error = ProtocolError(ErrorCode.TOO_LARGE, f"frame over {limit} bytes", limit=limit)
            return _ref_of(frame), error
        return decode_request(frame)

    async def _read_loop(self) -> None:
        if not await self._await_hello():
            return
        while (received := await self._receive()) is not None:
            ref, request = received
            if not self._admit(ref):
                await self._answer_error(ref, _rate_limited())
            elif isinstance(request, ProtocolError):
                await self._answer_error(ref, request)
            else:
                try:
                    await self._dispatch(ref, request)
                except ProtocolError as error:
                    await self._answer_error(ref, error)

    def _admit(self, ref: Ref) -> bool:
        """Count a frame, whatever it holds, against the rate limit. Refusals that go on at more
        than the rate itself (the client ignores ``rate_limited``) close the link with 1008."""
        if self._bucket.take():
            return True
        self._counters.rate_limited += 1
        if not self._flooding.take() and not self._closing:
            logger.warning(
                "connection %s from %s: flooding, closing it",
                self.connection_id,
                self._transport.remote,
                extra=self._log_fields(),
            )
            self._close(CloseCode.POLICY_VIOLATION, "flooding: requests over the rate limit")
        return False

    async def _await_hello(self) -> bool:
        with trio.move_on_after(self._config.hello_timeout):
            while (received := await self._receive()) is not None:
                ref, request = received
                if not self._admit(ref):
                    request = _rate_limited()
                elif isinstance(request, Hello):
                    self._counters.count_request(Hello.TYPE)
                    return await self._accept_hello(ref, request)
                elif not isinstance(request, ProtocolError):
                    request = ProtocolError(ErrorCode.UNAUTHORIZED, "send hello first")
                self.reply_error(ref, request)
            return False
        self._counters.hello_timeouts += 1
        self._close(CloseCode.HELLO_TIMEOUT, "no hello received in time")
        return False

    async def _accept_hello(self, ref: Ref, hello: Hello) -> bool:
        """Who the client is (its token verified), or refused: ``unauthorized`` and 4004, or
        1013 when the user has too many connections open."""
        gateway = self._gateway
        identity = self._verify(ref, hello.token)
        if identity is None:
            return False
        self.anonymous = identity.anonymous
        self._verified = identity.user_id is not None
        if identity.user_id is not None:
            self.user_id = identity.user_id
        else:
            self.user_id = ("anon_" if identity.anonymous else "u_") + gateway.env.token_hex(10)
        if self._verified and not gateway.guard.admit_user(self.user_id):
            self._verified = False  # not counted: nothing to give back at the end
            self.user_id = ""
            error = ProtocolError(ErrorCode.RATE_LIMITED, "too many connections for this user")
            self.reply_error(ref, error)
            self._close(CloseCode.TRY_AGAIN_LATER, error.message)
            return False
        self.name = hello.name or identity.name or "guest"
        gateway.directory.add(self)
        self.reply(
            ref,
            HelloReply(
                connection_id=self.connection_id,
                user_id=self.user_id,
                name=self.name,
                heartbeat_interval=self._config.heartbeat_interval,
                max_message_size=self._config.max_message_size,
                server=SERVER_NAME,
                anonymous=self.anonymous,
                expires_at=self._expiry(identity),
            ),
        )
        for live in gateway.supervisor.live_watched_by(self.user_id):
            await self._router.watch(self, live)
        return True

    def _verify(self, ref: Ref, token: str | None) -> Identity | None:
        """The token's identity; ``None`` after refusing it (``unauthorized``, then 4004)."""
        try:
            return self._gateway.auth.verify(token, now=self._gateway.env.wall())
        except AuthError as error:
            logger.info(
                "connection %s: token refused: %s",
                self.connection_id,
                error.reason,
                extra=self._log_fields(),
            )
            self._counters.auth_failures += 1
            self.reply_error(ref, ProtocolError(ErrorCode.UNAUTHORIZED, error.reason))
            self._close(CloseCode.UNAUTHORIZED, error.reason)
            return None

    def _expiry(self, identity: Identity) -> str | None:
        """Arm the expiry of the connection's token; its display time (``None``: none).

        The connection lasts as long as the token is accepted: until ``exp`` plus the leeway
        (a token accepted within the leeway is not closed at once). The display time is the
        token's own ``exp``, which a client refreshes ahead of.
        """
        if identity.expires_at is None:
            self._expires = math.inf
            return None
        env = self._gateway.env
        left = identity.expires_at - env.wall()
        self._expires = trio.current_time() + left + self._config.jwt_leeway
        return env.iso(left)

    def _log_fields(self) -> dict[str, str]:
        return {"connection": self.connection_id, "user": self.user_id, "client": self._address}

    # ---------------------------------------------------------------- routing

    async def _answer_error(self, ref: Ref, error: ProtocolError) -> None:
        await self._router.settle()
        self.reply_error(ref, error)

    async def _dispatch(self, ref: Ref, request: Request) -> None:
        self._counters.count_request(request.TYPE)
        if isinstance(request, Ping):
            await self._router.settle()
            self.deliver(_PONG) if ref is None else self.reply(ref, Empty())
        elif isinstance(request, SessionJoin):
            await self._join(ref, request)
        elif isinstance(request, SessionCreate):
            self._check_create(request)
            await self._router.enter(self, ref, request)
        elif isinstance(request, SessionResume):
            await self._router.enter(self, ref, request)
        elif isinstance(request, LiveStart):
            await self._go_live(ref, request)
        elif isinstance(request, AuthRefresh):
            await self._router.settle()
            self._refresh(ref, request)
        elif isinstance(request, Hello):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "hello was already received")
        else:
            assert isinstance(request, SessionRequest)
            await self._router.to_seat(self, ref, request)

    async def _join(self, ref: Ref, request: SessionJoin) -> None:
        """Join by code, within the limits on failed joins: a locked-out address is refused
        before the code is even looked up (the refusal says nothing about the code)."""
        guard = self._gateway.guard
        wait = guard.join_allowed(self._address)
        if wait is not None:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                "too many failed joins from your address; retry later",
                retry_after_ms=math.ceil(wait * 1000),
            )
        try:
            await self._router.enter(self, ref, request)
        except ProtocolError as error:
            if error.code is not ErrorCode.NOT_FOUND:
                raise
            await self._answer_error(ref, error)  # answered before the connection may close
            self._join_failed()
            return
        guard.join_succeeded(self._address)

    def _join_failed(self) -> None:
        """Count a join by an unknown code; close the connection at its limit (1008)."""
        self._gateway.guard.join_failed(self._address)
        self._join_failures += 1
        if self._join_failures >= self._config.join_failures_per_connection > 0:
            logger.warning(
                "connection %s: %d failed joins, closing it",
                self.connection_id,
                self._join_failures,
                extra=self._log_fields(),
            )
            self._close(CloseCode.POLICY_VIOLATION, "too many failed joins")

    def _check_create(self, request: SessionCreate) -> None:
        """Anonymous users never host; a user opens at most ``sessions_per_minute`` sessions
        (handing back the session it already hosts opens nothing, so it is not counted)."""
        if self.anonymous:
            raise ProtocolError(ErrorCode.FORBIDDEN, "anonymous users cannot host a session")
        reuses = not (request.fresh or request.another) and (
            self._gateway.supervisor.hosted(self.user_id) is not None
        )
        if reuses:
            return
        wait = self._gateway.guard.session_created(self.user_id)
        if wait is not None:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"at most {self._config.sessions_per_minute} new sessions per minute",
                retry_after_ms=math.ceil(wait * 1000),
            )

    async def _go_live(self, ref: Ref, request: LiveStart) -> None:
        """Open the caller's live session, watched by the guardians it has accepted."""
        if not self._verified or self.anonymous:
            raise ProtocolError(ErrorCode.FORBIDDEN, "going live needs a signed-in user")
        relations = self._gateway.relations
        try:
            guardians = await relations.guardians(self.user_id) if relations is not None else []
        except Exception:  # the store failed: this request fails, the connection goes on
            logger.exception(
                "could not read the guardians of %s", self.user_id, extra=self._log_fields()
            )
            raise ProtocolError(ErrorCode.INTERNAL, "could not read your guardians") from None
        await self._router.go_live(self, ref, request, guardians)

    def _refresh(self, ref: Ref, request: AuthRefresh) -> None:
        """A fresh token for the same user: the connection's expiry moves. A bad token changes
        nothing (the current one still runs out when it does)."""
        if not self._gateway.auth.enabled:  # development mode: tokens are not verified
            self.reply(ref, AuthReply(user_id=self.user_id))
            return
        try:
            identity = self._gateway.auth.verify(request.token, now=self._gateway.env.wall())
        except AuthError as error:
            self._counters.auth_failures += 1
            raise ProtocolError(ErrorCode.UNAUTHORIZED, error.reason) from None
        if identity.user_id is None or identity.user_id != self.user_id or not self._verified:
            raise ProtocolError(ErrorCode.FORBIDDEN, "the new token is for another user")
        self.reply(ref, AuthReply(user_id=self.user_id, expires_at=self._expiry(identity)))


def _rate_limited() -> ProtocolError:
    return ProtocolError(ErrorCode.RATE_LIMITED, "too many requests")


def _ref_of(frame: str) -> Ref:
    """The ``ref`` of an oversize frame, so its error can be matched; ``None`` if unreadable."""
    try:
        ref = orjson.loads(frame).get("ref")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return ref if type(ref) is int or (type(ref) is str and len(ref) <= MAX_REF_LENGTH) else None
