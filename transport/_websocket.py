"""The server's WebSocket transport: reading and control frames over one send queue.

Every frame the transport sends (data, ping, pong, close) goes through its
:class:`~._send_queue.SendQueue`: one ordered queue, one byte budget, written by the coalescer's
pass or the flusher task that :func:`open_websocket_transport` owns. Nothing here waits for
room: ``send_nowait`` queues or refuses.

Reading parses frames straight from ``receive_some`` (one read can carry many frames), answers
pings (one pong at a time: a newer ping replaces an unsent pong) and closes inline, rate-limits
frames of every kind, and yields to the scheduler every ``FEED_SIZE`` bytes parsed and every
``YIELD_EVERY`` messages handed out, so one read cannot stall the server.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Final

import trio

from ._base import SendBufferFull, TransportClosed
from ._coalescer import WriteCoalescer
from ._frames import (
    BINARY,
    CLOSE,
    INVALID_DATA,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameParser,
    build_frame,
    close_payload,
    parse_close,
    server_text_frame,
)
from ._rate import FRAME_BURST, MAX_FRAME_RATE, TokenBucket
from ._send_queue import SendQueue, TransportStatistics

logger = logging.getLogger(__name__)

RECEIVE_SIZE: Final = 64 * 1024  # bytes per read
FEED_SIZE: Final = 8 * 1024  # bytes parsed between rate checks and checkpoints
YIELD_EVERY: Final = 32  # messages handed out between checkpoints
POLICY_VIOLATION: Final = 1008  # close code past the frame rate


class WebSocketTransport:
    """A :class:`~._base.Transport` on a stream that completed the opening handshake.

    Built by :func:`open_websocket_transport`, which runs its flusher and releases its stream.
    ``send_buffer_size`` is the one byte budget of everything queued and not yet taken by the
    kernel. Every frame is accepted while the queue holds no more than that, so the most it
    holds is the budget plus one frame (plus one close frame, always accepted, 127 bytes at
    most). Past it ``send_nowait`` refuses; a pong (or ping) past it makes the transport
    *overflowed*: ``send_nowait`` refuses from then on and ``receive`` (or ``ping``) raises
    :class:`SendBufferFull`, so the caller closes the link with 4008.
    """

    # Thousands of these live at once: no per-instance __dict__.
    __slots__ = (
        "_bucket",
        "_close_received",
        "_handed",
        "_handed_at",
        "_messages",
        "_parser",
        "_pings",
        "_pongs",
        "_queue",
        "_received",
        "_stream",
        "client_host",
        "forwarded_for",
        "heard_at",
        "remote",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        coalescer: WriteCoalescer,
        *,
        received: bytes,
        max_message_size: int,
        send_buffer_size: int,
        max_frame_rate: float,
        frame_burst: int,
        remote: str,
        client_host: str,
        forwarded_for: str | None,
    ) -> None:
        self.remote = remote
        self.client_host = client_host
        self.forwarded_for = forwarded_for
        self._stream = stream
        # receiving
        self._parser = FrameParser(masked=True, max_size=max_message_size)
        self._bucket = TokenBucket(max_frame_rate, frame_burst)
        # read but not yet parsed (starts with the bytes past the request head)
        self._received: bytes | memoryview = received
        # Messages parsed from the last read, handed out from index _handed_at (a list, not a
        # deque: an empty deque holds a 64-slot block, and most connections wait empty).
        self._messages: list[str | bytes] = []
        self._handed_at = 0
        self._handed = 0  # messages handed out since the last checkpoint
        self._pings = itertools.count()
        self.heard_at = trio.current_time()
        self._pongs: dict[bytes, trio.Event] = {}
        self._close_received = False
        # The queue's callback holds the waiters, not the transport: a bound method would make
        # transport <-> queue a reference cycle, left for the cycle collector at the end.
        self._queue = SendQueue(
            stream, coalescer, send_buffer_size, partial(_release, self._pongs), remote
        )

    def statistics(self) -> TransportStatistics:
        """How much is queued, against what budget."""
        return self._queue.statistics()

    # ---------------------------------------------------------------- receiving

    async def receive(self) -> str | bytes:
        """The next message. Raises :class:`SendBufferFull` once overflowed, else
        :class:`TransportClosed` once the link is gone."""
        if self._queue.overflowed:
            await trio.lowlevel.checkpoint()
            raise SendBufferFull
        message = await self._next_message(strict=True)
        if self._queue.overflowed:  # pings read with this message went over the budget
            raise SendBufferFull
        return message

    async def _next_message(self, *, strict: bool) -> str | bytes:
        """The next message; ``strict`` raises :class:`SendBufferFull` as soon as a pong went
        over the budget, rather than once a message arrives."""
        while self._handed_at == len(self._messages):
            self._messages.clear()  # frees the list's items array
            self._handed_at = 0
            if strict and self._queue.overflowed:
                raise SendBufferFull
            if self._close_received or self._queue.broken:
                raise TransportClosed
            data, self._received = self._received, b""
            if data:
                await trio.lowlevel.checkpoint()  # the rest of a read: bounded work per pass
            else:
                data = await self._read()
            self._handed = 0
            self._feed(data)
        self._handed += 1
        if self._handed % YIELD_EVERY == 0:
            await trio.lowlevel.checkpoint()  # a burst of messages must not stall the server
        message = self._messages[self._handed_at]
        self._messages[self._handed_at] = b""  # not held once handed out
        self._handed_at += 1
        return message

    async def _read(self) -> bytes | memoryview:
        try:
            data = await self._stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._queue.release()  # the peer is gone: nothing more can be sent
            raise TransportClosed
        return bytes(data)

    def _feed(self, data: bytes | memoryview) -> None:
        """Parse ``data`` at most ``FEED_SIZE`` bytes at a time; the rest waits for the next
        call, so the work done between two checkpoints is bounded."""
        if len(data) > FEED_SIZE:
            view = memoryview(data)
            data, self._received = view[:FEED_SIZE], view[FEED_SIZE:]
        frames = self._parser.frames
        try:
            messages = self._parser.feed(data)
            if self._parser.frames != frames:
                self.heard_at = trio.current_time()
            if not self._bucket.take(self._parser.frames - frames):
                raise FrameError(POLICY_VIOLATION, "too many frames per second")
            for opcode, payload in messages:
                if opcode == TEXT:
                    self._messages.append(payload.decode())
                elif opcode == BINARY:
                    self._messages.append(payload)
                elif opcode == PING:
                    if not self._queue.closed:  # nothing is sent after a close frame
                        self._queue.pong(build_frame(PONG, payload))
                elif opcode == PONG:
                    if (waiter := self._pongs.pop(payload, None)) is not None:
                        waiter.set()
                else:
                    self._on_close(*parse_close(payload))
                    return
        except UnicodeDecodeError:
            self._fail(FrameError(INVALID_DATA, "text frame is not UTF-8"))
        except FrameError as error:
            self._fail(error)

    def _on_close(self, code: int, reason: str) -> None:
        self._close_received = True
        self._received = b""
        # echo the code, completing the closing handshake (a no-op if ours was sent first)
        self._send_close(1000 if code == 1005 else code, "")
        self._wake_all()

    def _fail(self, error: FrameError) -> None:
        logger.info("closing %s: %s", self.remote, error.reason)
        self._messages.clear()
        self._handed_at = 0
        self._received = b""
        if not self._queue.closed:
            self._send_close(error.code, error.reason)
        self._close_received = True  # read nothing more from a peer that broke the protocol

    # ---------------------------------------------------------------- sending

    @property
    def gone(self) -> bool:
        """Nothing more can be sent: our close frame is queued, or the link broke."""
        return self._queue.closed or self._queue.broken

    def send_nowait(self, frame: str) -> bool:
        """Queue one text frame; ``False`` (nothing queued) while more than the budget is
        queued, once overflowed, or once the link is closing or gone."""
        return self._queue.offer(server_text_frame(frame))

    def ping_nowait(self) -> bool:
        """Queue a ping; its pong moves ``heard_at``. ``False`` when closing, gone or over budget
        (then overflowed: ``receive`` raises :class:`SendBufferFull`)."""
        if self._queue.closed or self._close_received or self._queue.broken:
            return False
        return self._queue.control(build_frame(PING, next(self._pings).to_bytes(8, "big")))

    async def ping(self) -> None:
        """Send a ping and wait for its pong (read by whichever task is in ``receive``).

        Raises :class:`SendBufferFull` if the queue is over its budget, else
        :class:`TransportClosed` once the link is closing or gone.
        """
        if self._queue.closed or self._close_received or self._queue.broken:
            await trio.lowlevel.checkpoint()
            raise TransportClosed
        payload = next(self._pings).to_bytes(8, "big")
        if not self._queue.control(build_frame(PING, payload)):
            await trio.lowlevel.checkpoint()
            raise SendBufferFull
        waiter = self._pongs[payload] = trio.Event()
        await waiter.wait()
        if self._queue.broken or self._close_received:
            raise TransportClosed

    async def aclose(self, code: int, reason: str) -> None:
        """Queue a close frame behind everything queued, wait for it to be written and for the
        peer's close frame, then drop the stream. Never raises; callers bound the wait."""
        try:
            self._send_close(code, reason)
            await self._queue.wait_drained()
            while not self._close_received and not self._queue.broken:
                self._messages.clear()  # discards what the client still sends before its close
                self._handed_at = 0
                await self._next_message(strict=False)
        except TransportClosed:
            pass
        finally:
            await self.abort()

    async def abort(self) -> None:
        """Drop the link now, without a close frame."""
        self.release()
        await trio.aclose_forcefully(self._stream)

    def release(self) -> None:
        """Write what is queued if the socket takes it at once, then nothing more."""
        self._queue.release()

    def _send_close(self, code: int, reason: str) -> None:
        self._queue.close(build_frame(CLOSE, close_payload(code, reason)))

    def _wake_all(self) -> None:
        """Release every ``ping`` waiting: the link is closing or gone."""
        _release(self._pongs)


def _release(pongs: dict[bytes, trio.Event]) -> None:
    """Wake every task waiting for a pong."""
    for waiter in pongs.values():
        waiter.set()
    pongs.clear()


@contextlib.asynccontextmanager
async def open_websocket_transport(
    stream: trio.abc.Stream,
    coalescer: WriteCoalescer,
    *,
    received: bytes = b"",
    max_message_size: int,
    send_buffer_size: int,
    max_frame_rate: float = MAX_FRAME_RATE,
    frame_burst: int = FRAME_BURST,
    remote: str = "?",
    client_host: str = "?",
    forwarded_for: str | None = None,
) -> AsyncIterator[WebSocketTransport]:
    """Open a :class:`WebSocketTransport` on ``stream`` (after the 101), with its flusher task
    (started in the context manager's own nursery the first time the socket pushes back).

    Resource handling: the transport owns ``stream`` from here on. On exit, however the body
    ends, what is queued is written if the socket takes it at once, nothing is written after
    that, the flusher is cancelled and the stream is closed. ``received`` holds bytes read past
    the request head, parsed first. An exception from the body comes out as itself, not wrapped
    in an exception group.
    """
    transport = WebSocketTransport(
        stream,
        coalescer,
        received=received,
        max_message_size=max_message_size,
        send_buffer_size=send_buffer_size,
        max_frame_rate=max_frame_rate,
        frame_burst=frame_burst,
        remote=remote,
        client_host=client_host,
        forwarded_for=forwarded_for,
    )
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            transport._queue.start_flusher = nursery.start_soon
            try:
                yield transport
            except BaseException as exc:  # re-raised below, outside the nursery
                error = exc
            finally:
                transport.release()
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)
    if error is not None:
        raise error
