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

import hashlib
import logging
from typing import TYPE_CHECKING, Final

import orjson
import trio

from protocol import (
    MAX_REF_LENGTH,
    CloseCode,
    Empty,
    ErrorCode,
    Hello,
    HelloReply,
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

from ._router import Router

if TYPE_CHECKING:
    from actors import Config, Environment, Supervisor

    from ._counters import Counters

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
        "_abuse",
        "_bucket",
        "_close_reason",
        "_closing",
        "_config",
        "_counters",
        "_env",
        "_last_heard",
        "_link_dead",
        "_router",
        "_scope",
        "_transport",
        "connection_id",
        "name",
        "user_id",
    )

    def __init__(
        self,
        transport: Transport,
        supervisor: Supervisor,
        config: Config,
        counters: Counters,
        env: Environment,
    ) -> None:
        self.connection_id = "c_" + env.token_hex(8)
        self.user_id = ""
        self.name = "guest"
        self._transport = transport
        self._config = config
        self._counters = counters
        self._env = env
        self._router = Router(supervisor, config.max_sessions_per_connection)
        self._closing = False
        self._link_dead = False  # heartbeat expired: no closing handshake can succeed
        # Kept unless the link ends another way: only an outside cancel (shutdown) leaves it.
        self._close_reason: tuple[int, str] = (CloseCode.SERVICE_RESTART, "server restarting")
        self._scope = trio.CancelScope()
        self._last_heard = trio.current_time()
        self._bucket = TokenBucket(config.rate_limit, config.rate_burst)
        self._abuse = TokenBucket(config.rate_limit, config.rate_burst)  # drained by refusals

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

    def seat_ended(self, code: str, reason: str, close: CloseCode | None = None) -> None:
        seats = self._router.seats
        if seats.ended(code, reason) is None or close is None:
            return
        if len(seats):
            self.deliver(encode_event(SeatEnded(session=code, reason=reason)))
        else:
            self._close(close, f"seat {reason}")

    # ---------------------------------------------------------------- closing

    def _close(self, code: int, reason: str) -> None:
        """Stop serving; the link then ends with ``code`` after what is queued (``_end_link``)."""
        if self._closing:
            return
        self._closing = True
        self._close_reason = (code, reason)
        self._scope.cancel()

    def _slow_consumer(self) -> None:
        logger.warning("connection %s: send buffer full, closing slow consumer", self.connection_id)
        self._counters.slow_consumers += 1
        self._close(CloseCode.SLOW_CONSUMER, "slow consumer: send buffer full")

    # ---------------------------------------------------------------- tasks

    async def serve(self) -> None:
        """Serve the link until it closes. Always ends the link (close frame or abort).

        One task: the reader, which also keeps the heartbeat (a quiet link is pinged, a silent
        one dropped), so an idle connection costs no task of its own beyond this one.
        """
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
        ``None`` once it ends, or is silent for two intervals (heartbeat timeout, 4003)."""
        transport, interval = self._transport, self._config.heartbeat_interval
        pinged = False
        while True:
            # CancelScope itself rather than move_on_at: a generator-based context manager per
            # message cost about 3% of the server's time under fan-out.
            with trio.CancelScope(deadline=self._last_heard + (2 if pinged else 1) * interval):
                try:
                    return await transport.receive()
                except SendBufferFull:
                    self._slow_consumer()
                    return None
                except TransportClosed:
                    return None
            if transport.heard_at > self._last_heard:  # a pong (or a frame) came meanwhile
                self._last_heard, pinged = transport.heard_at, False
            elif not pinged:
                pinged = True
                if not transport.ping_nowait():
                    continue  # over budget: the next receive says so
            else:
                logger.info("connection %s: no heartbeat, dropping it", self.connection_id)
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
        if not self._abuse.take() and not self._closing:
            logger.warning(
                "connection %s from %s: flooding, closing it",
                self.connection_id,
                self._transport.remote,
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
                    self._accept_hello(ref, request)
                    return True
                elif not isinstance(request, ProtocolError):
                    request = ProtocolError(ErrorCode.UNAUTHORIZED, "send hello first")
                self.reply_error(ref, request)
            return False
        self._counters.hello_timeouts += 1
        self._close(CloseCode.HELLO_TIMEOUT, "no hello received in time")
        return False

    def _accept_hello(self, ref: Ref, hello: Hello) -> None:
        if hello.token is not None:  # a stable identity: same token, same user
            self.user_id = "u_" + _digest(hello.token)
        else:
            self.user_id = "u_" + self._env.token_hex(10)
        self.name = hello.name or "guest"
        self.reply(
            ref,
            HelloReply(
                connection_id=self.connection_id,
                user_id=self.user_id,
                name=self.name,
                heartbeat_interval=self._config.heartbeat_interval,
                max_message_size=self._config.max_message_size,
                server=SERVER_NAME,
            ),
        )

    # ---------------------------------------------------------------- routing

    async def _answer_error(self, ref: Ref, error: ProtocolError) -> None:
        await self._router.settle()
        self.reply_error(ref, error)

    async def _dispatch(self, ref: Ref, request: Request) -> None:
        if isinstance(request, Ping):
            await self._router.settle()
            self.deliver(_PONG) if ref is None else self.reply(ref, Empty())
        elif isinstance(request, Hello):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "hello was already received")
        elif isinstance(request, SessionCreate | SessionJoin | SessionResume):
            await self._router.enter(self, ref, request)
        else:
            assert isinstance(request, SessionRequest)
            await self._router.to_seat(self, ref, request)


def _rate_limited() -> ProtocolError:
    return ProtocolError(ErrorCode.RATE_LIMITED, "too many requests")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:20]


def _ref_of(frame: str) -> Ref:
    """The ``ref`` of an oversize frame, so its error can be matched; ``None`` if unreadable."""
    try:
        ref = orjson.loads(frame).get("ref")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return ref if type(ref) is int or (type(ref) is str and len(ref) <= MAX_REF_LENGTH) else None
