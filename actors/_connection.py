"""One task group per client connection: reader, writer and heartbeat.

The reader parses frames into typed requests and routes them: ``hello`` and ``ping`` it answers
itself, ``session:create``/``join``/``resume`` go to the supervisor's registry, the rest to the
session the connection is bound to. It *awaits* the actor's inbox, so a flooding client is
back-pressured. Replies and events go out in the order they are put: straight to the transport
(``send_nowait``) while nothing waits ahead of them, else into one bounded outbox drained by the
writer. Nobody waits to put a frame; a full outbox disconnects the client as a slow consumer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from typing import TYPE_CHECKING, Final

import attrs
import trio

from protocol import (
    CloseCode,
    ErrorCode,
    Hello,
    Ping,
    ProtocolError,
    Ref,
    Request,
    SessionClose,
    SessionCreate,
    SessionJoin,
    SessionLeave,
    SessionResume,
    decode_request,
    encode,
    encode_error,
    encode_reply,
)
from transport import Transport, TransportClosed

from ._messages import Command, PeerGone
from ._rate_limit import TokenBucket

if TYPE_CHECKING:
    from ._config import Config
    from ._supervisor import SessionHandle, Supervisor

logger = logging.getLogger(__name__)

CLEANUP_TIMEOUT: Final = 5.0  # seconds to tell the session and finish the closing handshake
# On shutdown the transport's own reader is cancelled too, so the closing handshake cannot
# complete: send the close frame and give up waiting almost at once.
SHUTDOWN_CLOSE_TIMEOUT: Final = 0.1  # seconds
SERVER_NAME: Final = "trio-sessions/0.1"
_PONG: Final = encode({"type": "pong"})
_ENTRY = (SessionCreate, SessionJoin, SessionResume)
_AWAITED = (*_ENTRY, SessionLeave, SessionClose)  # requests that change the binding


@attrs.define
class ConnectionCounters:
    """Process-wide connection counters, for metrics."""

    open: int = 0
    accepted: int = 0
    slow_consumers: int = 0
    heartbeat_timeouts: int = 0
    hello_timeouts: int = 0
    rate_limited: int = 0
    bad_requests: int = 0
    frames_received: int = 0
    frames_sent: int = 0


@attrs.frozen
class _Close:
    code: CloseCode
    reason: str


_Outgoing = str | list[str] | _Close


class Connection:
    """Serves one client link. Implements :class:`actors.Peer` for the session actors."""

    def __init__(
        self,
        transport: Transport,
        supervisor: Supervisor,
        config: Config,
        counters: ConnectionCounters,
    ) -> None:
        self.connection_id = "c_" + secrets.token_hex(8)
        self.user_id = ""
        self.name = "guest"
        self.participant_id: str | None = None
        self._transport = transport
        self._supervisor = supervisor
        self._config = config
        self._counters = counters
        self._session: SessionHandle | None = None  # written by session actors via bind/unbind
        self._ended: str | None = None  # why the last bound session let this connection go
        # Sized in frames: a burst larger than this means the client is not keeping up.
        self._outbox, self._outbox_receive = trio.open_memory_channel[_Outgoing](config.outbox_size)
        self._closing = False
        self._writing = False  # a send is under way (a cancel now leaves half a frame)
        self._unwritten = 0  # items put in the outbox and not yet fully written
        self._link_dead = False  # heartbeat expired: no closing handshake can succeed
        # Kept unless the link ends another way: only an outside cancel (shutdown) leaves it.
        self._close_reason: tuple[int, str] = (CloseCode.GOING_AWAY, "server shutting down")
        self._scope = trio.CancelScope()
        self._last_heard = trio.current_time()
        self._bucket = TokenBucket(config.rate_limit, config.rate_burst)

    # ---------------------------------------------------------------- Peer

    def deliver(self, frame: str) -> bool:
        return self._put(frame)

    def deliver_many(self, frames: list[str]) -> bool:
        return self._put(frames)

    def reply(self, ref: Ref, data: dict[str, object]) -> None:
        if ref is not None:
            self._put(encode_reply(ref, data))

    def reply_error(self, ref: Ref, error: ProtocolError) -> None:
        if error.code is ErrorCode.BAD_REQUEST:
            self._counters.bad_requests += 1
        self._put(encode_error(ref, error))

    def close(self, code: CloseCode, reason: str) -> None:
        if self._closing:
            return
        try:
            self._outbox.send_nowait(_Close(code, reason))
        except trio.WouldBlock:
            self._cut_off(code, reason)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        self._closing = True

    def bind(self, session: SessionHandle, participant_id: str) -> None:
        self._session = session
        self.participant_id = participant_id

    def unbind(self, session: SessionHandle, reason: str) -> None:
        if self._session is session:
            self._session = None
            self.participant_id = None
            self._ended = reason if reason not in ("left", "replaced") else None

    def _put(self, item: _Outgoing) -> bool:
        if self._closing:
            return False
        self._counters.frames_sent += 1 if type(item) is str else len(item)
        # Nothing queued or being written ahead of it: write now if the transport can take it
        # at once, sparing the writer task a wake-up. Otherwise queue it behind the rest.
        if not self._unwritten and type(item) is str and self._transport.send_nowait(item):
            return True
        try:
            self._outbox.send_nowait(item)
            self._unwritten += 1
        except trio.WouldBlock:
            logger.warning("connection %s: outbox full, closing slow consumer", self.connection_id)
            self._counters.slow_consumers += 1
            self._cut_off(CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    def _cut_off(self, code: CloseCode, reason: str) -> None:
        """Drop what is queued and close after the frame being written, within a bound.

        Graceful first: the frame in flight finishes, then the close frame goes out. If the
        client still does not read, the deadline cancels the write and the link is aborted.
        """
        self._closing = True
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            while True:
                self._outbox_receive.receive_nowait()
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._outbox.send_nowait(_Close(code, reason))
        self._close_reason = (code, reason)
        self._scope.deadline = min(self._scope.deadline, trio.current_time() + CLEANUP_TIMEOUT)

    # ---------------------------------------------------------------- tasks

    async def serve(self) -> None:
        """Serve the link until it closes. Always closes the transport before returning."""
        self._counters.open += 1
        self._counters.accepted += 1
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    nursery.start_soon(self._heartbeat_loop)
                    await self._read_loop()
                    if not self._closing:  # the client went away; else the writer closes
                        nursery.cancel_scope.cancel()
        except Exception:
            self._close_reason = (CloseCode.INTERNAL_ERROR, "internal error")
            raise
        finally:
            self._closing = True
            self._outbox.close()
            self._outbox_receive.close()
            with trio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                await self._leave_session()
            code, reason = self._close_reason
            wait = SHUTDOWN_CLOSE_TIMEOUT if code == CloseCode.GOING_AWAY else CLEANUP_TIMEOUT
            with trio.move_on_after(wait, shield=True):
                if self._writing or self._link_dead:  # a frame was cut short: no close frame
                    await self._transport.abort()
                else:
                    await self._transport.aclose(code, reason)
            self._counters.open -= 1

    async def _leave_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await session.send(PeerGone(self))

    async def _write_loop(self) -> None:
        send = self._transport.send
        try:
            async for item in self._outbox_receive:
                if isinstance(item, _Close):
                    self._close_reason = (item.code, item.reason)
                    break
                self._writing = True
                if isinstance(item, str):
                    await send(item)
                else:
                    for frame in item:
                        await send(frame)
                self._writing = False
                self._unwritten -= 1
        except TransportClosed:
            pass
        self._scope.cancel()

    async def _heartbeat_loop(self) -> None:
        """Ping a link that has been quiet for an interval; one silent for two is dead."""
        interval = self._config.heartbeat_interval
        while True:
            await trio.sleep_until(self._last_heard + interval)
            if trio.current_time() < self._last_heard + interval:
                continue  # heard from the client meanwhile: no ping needed
            with trio.move_on_at(self._last_heard + 2 * interval):
                try:
                    await self._transport.ping()
                except TransportClosed:
                    return
                self._last_heard = trio.current_time()
            if trio.current_time() >= self._last_heard + 2 * interval:
                logger.info("connection %s: no heartbeat, dropping it", self.connection_id)
                self._counters.heartbeat_timeouts += 1
                self._link_dead = True
                self._close_reason = (CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                self._scope.cancel()
                return

    async def _receive(self) -> tuple[Ref, Request | ProtocolError] | None:
        """The next decoded frame, or ``None`` once the connection is ending."""
        try:
            frame = await self._transport.receive()
        except TransportClosed:
            return None
        self._last_heard = trio.current_time()
        self._counters.frames_received += 1
        if isinstance(frame, bytes):
            return None, ProtocolError(ErrorCode.BAD_REQUEST, "binary frames are not accepted")
        limit = self._config.max_message_size
        if len(frame) > limit or (4 * len(frame) > limit and len(frame.encode()) > limit):
            self.reply_error(None, ProtocolError(ErrorCode.TOO_LARGE, f"frame over {limit} bytes"))
            self.close(CloseCode.TOO_LARGE, "frame too large")
            return None
        return decode_request(frame)

    async def _read_loop(self) -> None:
        if not await self._await_hello():
            return
        while (received := await self._receive()) is not None:
            ref, request = received
            if isinstance(request, ProtocolError):
                self.reply_error(ref, request)
            elif not self._bucket.take():
                self._counters.rate_limited += 1
                self.reply_error(ref, ProtocolError(ErrorCode.RATE_LIMITED, "too many requests"))
            else:
                try:
                    await self._dispatch(ref, request)
                except ProtocolError as error:
                    self.reply_error(ref, error)

    async def _await_hello(self) -> bool:
        with trio.move_on_after(self._config.hello_timeout):
            while (received := await self._receive()) is not None:
                ref, request = received
                if isinstance(request, Hello):
                    self._accept_hello(ref, request)
                    return True
                if not isinstance(request, ProtocolError):
                    request = ProtocolError(ErrorCode.UNAUTHORIZED, "send hello first")
                self.reply_error(ref, request)
            return False
        self._counters.hello_timeouts += 1
        self.close(CloseCode.HELLO_TIMEOUT, "no hello received in time")
        return False

    def _accept_hello(self, ref: Ref, hello: Hello) -> None:
        if hello.token is not None:  # a stable identity: same token, same user
            self.user_id = "u_" + hashlib.sha256(hello.token.encode()).hexdigest()[:20]
        else:
            self.user_id = "u_" + secrets.token_hex(10)
        self.name = hello.name or "guest"
        self.reply(
            ref,
            {
                "connection_id": self.connection_id,
                "user_id": self.user_id,
                "name": self.name,
                "heartbeat_interval": self._config.heartbeat_interval,
                "max_message_size": self._config.max_message_size,
                "server": SERVER_NAME,
            },
        )

    async def _dispatch(self, ref: Ref, request: Request) -> None:
        if isinstance(request, Ping):
            self._put(_PONG) if ref is None else self.reply(ref, {})
        elif isinstance(request, Hello):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "hello was already received")
        elif isinstance(request, _ENTRY):
            await self._route(self._entry_target(request), ref, request)
        elif self._session is not None:
            await self._route(self._session, ref, request)
        elif self._ended is not None:
            raise ProtocolError(ErrorCode.SESSION_CLOSED, f"your session has ended ({self._ended})")
        else:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "not in a session: create or join one first")

    def _entry_target(self, request: SessionCreate | SessionJoin | SessionResume) -> SessionHandle:
        bound = self._session
        if isinstance(request, SessionCreate):
            if bound is not None and bound.host_user_id != self.user_id:
                raise self._already_in(bound)
            return self._supervisor.open_session(self.user_id)[0]
        if isinstance(request, SessionJoin):
            target = self._supervisor.lookup(request.code.upper())
            if target is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no live session {request.code!r}")
        else:
            target = self._supervisor.lookup(request.token.partition(".")[0])
            if target is None:
                raise ProtocolError(ErrorCode.SESSION_CLOSED, "the session of this token has ended")
        if bound is not None and bound is not target:
            raise self._already_in(bound)
        return target

    @staticmethod
    def _already_in(bound: SessionHandle) -> ProtocolError:
        return ProtocolError(
            ErrorCode.BAD_REQUEST, f"already in session {bound.code}; leave it first"
        )

    async def _route(self, session: SessionHandle, ref: Ref, request: Request) -> None:
        # Requests that change which session this connection is bound to are awaited, so the
        # next frame is routed with the new binding.
        done = trio.Event() if isinstance(request, _AWAITED) else None
        try:
            await session.send(Command(self, ref, request, done))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ProtocolError(
                ErrorCode.SESSION_CLOSED, f"session {session.code} has ended"
            ) from None
        if done is not None:
            await done.wait()
