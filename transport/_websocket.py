"""The server's WebSocket transport: an h11 handshake, then framing it owns.

Every frame a connection sends (data, pong, close) goes through one writer discipline, so frames
never interleave. A frame is appended to its connection's pending list; once the tasks that are
sending have yielded, the :class:`WriteCoalescer` writes each connection's pending frames with
one non-blocking ``send``. What the kernel does not take goes to a bounded overflow queue that a
per-connection flusher task drains; while it holds anything, new frames queue behind it. Sending
never waits while the client keeps up, a broadcast's frame is built once
(:func:`server_text_frame`) for every recipient, and under load several broadcasts to one
connection cost one system call.

Reading parses frames straight from ``receive_some`` (one read can carry many frames) and
answers pings and closes inline. trio-websocket remains the client side (``client/``) and its
server is what the benchmarks compare with; its server connection owns the stream with its own
reader task and send lock, which leaves no public way to take the write path over, so the
handshake here uses h11 (trio-websocket's own HTTP layer) directly. Relies on h11's public API
(pinned in pyproject.toml) and on ``trio.SocketStream.socket`` for the file descriptor.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, NoReturn

import h11
import trio

from ._base import Transport, TransportClosed
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

logger = logging.getLogger(__name__)

WS_PATH: Final = "/ws"
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds for the request head and the upgrade
MAX_REQUEST_HEAD: Final = 16 * 1024  # bytes
RECEIVE_SIZE: Final = 64 * 1024  # bytes per read
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

HttpRoute = Callable[[], tuple[str, bytes]]
"""A plain-HTTP GET endpoint: returns ``(content_type, body)``."""


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


class WebSocketTransport:
    """A :class:`Transport` on a stream that completed the opening handshake.

    ``send_buffer_size`` bounds the bytes queued behind the socket; past it ``send_nowait``
    returns ``False`` and ``send`` waits for the flusher, so the caller's slow-consumer policy
    decides. The flusher task is started in ``nursery`` when first needed; the nursery must
    outlive the transport's use.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        nursery: trio.Nursery,
        coalescer: WriteCoalescer,
        *,
        received: bytes,
        max_message_size: int,
        send_buffer_size: int,
        remote: str,
    ) -> None:
        self.remote = remote
        self._stream = stream
        self._nursery = nursery
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._parser = FrameParser(masked=True, max_size=max_message_size)
        self._received = received  # bytes read past the handshake, parsed on the first receive
        self._messages: deque[str | bytes] = deque()
        self._limit = send_buffer_size
        self._coalescer = coalescer
        self._pending: list[bytes] = []  # for the coalescer's next pass
        self._queued: list[bytes] = []  # what the socket refused, for the flusher
        self._queued_size = 0  # bytes pending, queued or being flushed
        self._flushing = False
        self._flusher_started = False
        self._wake_flusher = trio.Event()
        self._flushed = trio.Event()
        self._pings = itertools.count()
        self._pongs: dict[bytes, trio.Event] = {}
        self._close_sent = False
        self._close_received = False
        self._broken = False  # reset, or a write failed: nothing more can be sent

    # ---------------------------------------------------------------- receiving

    async def receive(self) -> str | bytes:
        while not self._messages:
            if self._close_received or self._broken:
                raise TransportClosed
            data, self._received = self._received, b""
            if not data:
                try:
                    data = await self._stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self._mark_broken()
                    raise TransportClosed
            self._feed(data)
        return self._messages.popleft()

    def _feed(self, data: bytes) -> None:
        try:
            for opcode, payload in self._parser.feed(data):
                if opcode == TEXT:
                    self._messages.append(payload.decode())
                elif opcode == BINARY:
                    self._messages.append(payload)
                elif opcode == PING:
                    self._write(build_frame(PONG, payload))
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
        if not self._close_sent:  # echo the code, completing the closing handshake
            self._send_close(1000 if code == 1005 else code, "")
        self._wake_all()

    def _fail(self, error: FrameError) -> None:
        logger.info("closing %s: %s", self.remote, error.reason)
        if not self._close_sent:
            self._send_close(error.code, error.reason)
        self._close_received = True  # read nothing more from a peer that broke the protocol

    # ---------------------------------------------------------------- sending

    def send_nowait(self, frame: str) -> bool:
        if self._queued_size > self._limit or self._close_sent or self._broken:
            return False
        self._write(server_text_frame(frame))
        return True

    async def send(self, frame: str) -> None:
        while self._queued_size > self._limit and not self._broken:
            await self._flushed.wait()
        if self._close_sent or self._broken:
            raise TransportClosed
        self._write(server_text_frame(frame))

    async def ping(self) -> None:
        payload = next(self._pings).to_bytes(8, "big")
        waiter = self._pongs[payload] = trio.Event()
        self._write(build_frame(PING, payload))
        await waiter.wait()
        if self._broken or self._close_received:
            raise TransportClosed

    async def aclose(self, code: int, reason: str) -> None:
        try:
            if not self._close_sent:
                self._send_close(code, reason)
            while (self._pending or self._queued or self._flushing) and not self._broken:
                await self._flushed.wait()
            while not self._close_received and not self._broken:
                await self.receive()  # discards what the client still sends before its close
        except TransportClosed:
            pass
        finally:
            await self.abort()

    async def abort(self) -> None:
        self.release()
        await trio.aclose_forcefully(self._stream)

    def release(self) -> None:
        """Write what is pending now, then nothing more: the socket is being closed, and its
        descriptor may be reused by the next connection before the coalescer's next pass."""
        if self._pending and not self._broken:
            self.write_pending()
        self._fd = -1
        self._pending.clear()
        self._mark_broken()

    def _send_close(self, code: int, reason: str) -> None:
        self._close_sent = True
        self._write(build_frame(CLOSE, close_payload(code, reason)))

    def _write(self, data: bytes) -> None:
        """Queue ``data`` for the coalescer's next pass, or behind what the socket refused."""
        if self._broken:
            return
        self._queued_size += len(data)
        if self._queued or self._flushing or self._fd < 0:
            self._enqueue(data)
            return
        if not self._pending:
            self._coalescer.mark(self)
        self._pending.append(data)

    def write_pending(self) -> None:
        """Write what was sent since the coalescer's last pass, in one non-blocking ``send``."""
        data = b"".join(self._pending)
        self._pending.clear()
        if self._broken:
            return
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._mark_broken()
            return
        self._queued_size -= sent
        if sent < len(data):
            self._enqueue(data[sent:])
        else:
            self._signal_flushed()

    def _enqueue(self, data: bytes) -> None:
        """Hand ``data`` to the flusher task, after what it already holds."""
        self._queued.append(data)
        if not self._flusher_started:
            self._flusher_started = True
            self._nursery.start_soon(self._flush_loop)
        self._wake_flusher.set()

    async def _flush_loop(self) -> None:
        """Drain the overflow queue in order; the only task that awaits the stream's send."""
        while True:
            await self._wake_flusher.wait()
            self._wake_flusher = trio.Event()
            while self._queued and not self._broken:
                data = b"".join(self._queued)
                self._queued.clear()
                self._flushing = True
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._mark_broken()
                except trio.Cancelled:
                    self._mark_broken()  # part of a frame may be on the wire
                    raise
                finally:
                    self._flushing = False
                self._queued_size -= len(data)
            self._signal_flushed()

    def _signal_flushed(self) -> None:
        """Wake whoever waits for the queues to drain (``send``, ``aclose``)."""
        self._flushed.set()
        self._flushed = trio.Event()

    def _mark_broken(self) -> None:
        """Nothing more can be sent: reset, a failed write, or the socket released."""
        self._broken = True
        self._wake_all()

    def _wake_all(self) -> None:
        """Release everything waiting on the link: it is closing or gone."""
        for waiter in self._pongs.values():
            waiter.set()
        self._pongs.clear()
        self._flushed.set()


class WriteCoalescer:
    """Writes every connection's frames of one scheduler pass with one ``send`` each.

    Frames are not written where they are sent (a session actor broadcasting, a reader
    answering a ping) but collected per connection; this task runs once the senders yield,
    so a connection that got several frames meanwhile (under load, several broadcasts) costs one
    system call instead of one per frame. One per listener set, in ``serve_websocket``'s nursery.
    """

    def __init__(self) -> None:
        self._dirty: list[WebSocketTransport] = []
        self._wake = trio.Event()

    def mark(self, transport: WebSocketTransport) -> None:
        self._dirty.append(transport)
        self._wake.set()

    async def run(self) -> NoReturn:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            dirty, self._dirty = self._dirty, []
            for transport in dirty:
                transport.write_pending()


async def _read_request(connection: h11.Connection, stream: trio.abc.Stream) -> h11.Request | None:
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some(MAX_REQUEST_HEAD))
        elif isinstance(event, h11.Request):
            return event
        else:
            return None


async def _respond(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    headers: Sequence[tuple[str, str]] = (),
) -> None:
    head = [("content-type", content_type), ("content-length", str(len(body))), *headers]
    data = connection.send(h11.Response(status_code=status, headers=head))
    data += connection.send(h11.Data(data=body)) + connection.send(h11.EndOfMessage())
    await stream.send_all(data)


async def serve_websocket(
    handler: Callable[[Transport], Awaitable[None]],
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    *,
    max_frame_size: int,
    send_buffer_size: int,
    http_routes: Mapping[str, HttpRoute] | None = None,
    task_status: trio.TaskStatus[Sequence[trio.abc.Listener[trio.abc.Stream]]] = (
        trio.TASK_STATUS_IGNORED
    ),
) -> NoReturn:
    """Accept WebSocket connections at ``/ws`` on ``listeners`` and run ``handler`` for each.

    Plain GETs on a path in ``http_routes`` are answered from it; a request to ``/ws`` that is
    not a WebSocket upgrade gets 426, other paths 404, a malformed request 400. A request head
    not complete in ``HANDSHAKE_TIMEOUT`` is dropped. Compression is never negotiated.
    ``handler`` should not raise; anything it does raise is logged, so one connection can never
    stop the server. Reports the listeners once accepting. Never returns unless cancelled.
    """
    routes = dict(http_routes or {})

    async def on_stream(stream: trio.abc.Stream) -> None:
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        try:
            with trio.move_on_after(HANDSHAKE_TIMEOUT):
                try:
                    request = await _read_request(connection, stream)
                except h11.RemoteProtocolError:
                    await _respond(connection, stream, 400, b"malformed HTTP request")
                    return
                if request is None:
                    return
                key = _upgrade_key(request)
                path = request.target.decode("latin-1").partition("?")[0]
                if path != WS_PATH or key is None:
                    await _answer_plain(connection, stream, request, path, routes)
                    return
                connection.next_event()  # the request's end; the stream switches after it
                headers = [
                    ("upgrade", "websocket"),
                    ("connection", "Upgrade"),
                    ("sec-websocket-accept", accept_key(key).decode()),
                ]
                upgrade = h11.InformationalResponse(status_code=101, headers=headers)
                await stream.send_all(connection.send(upgrade))
            if connection.our_state is not h11.SWITCHED_PROTOCOL:
                return
            async with trio.open_nursery() as nursery:  # holds the transport's flusher
                transport = WebSocketTransport(
                    stream,
                    nursery,
                    coalescer,
                    received=connection.trailing_data[0],
                    max_message_size=max_frame_size,
                    send_buffer_size=send_buffer_size,
                    remote=_remote(stream),
                )
                try:
                    await handler(transport)
                except Exception:
                    logger.exception("connection from %s failed", transport.remote)
                finally:
                    transport.release()
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            pass  # the client went away mid-handshake
        finally:
            await trio.aclose_forcefully(stream)

    coalescer = WriteCoalescer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(coalescer.run)
        await trio.serve_listeners(on_stream, list(listeners), task_status=task_status)


def _upgrade_key(request: h11.Request) -> bytes | None:
    """The client's key if ``request`` is a valid WebSocket upgrade, else ``None``."""
    headers: dict[bytes, bytes] = {}
    for name, value in request.headers:
        headers[name] = headers[name] + b"," + value if name in headers else value
    tokens = {token.strip() for token in headers.get(b"connection", b"").lower().split(b",")}
    if (
        request.method != b"GET"
        or headers.get(b"upgrade", b"").lower() != b"websocket"
        or b"upgrade" not in tokens
        or headers.get(b"sec-websocket-version") != b"13"
    ):
        return None
    return headers.get(b"sec-websocket-key")


async def _answer_plain(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    request: h11.Request,
    path: str,
    routes: Mapping[str, HttpRoute],
) -> None:
    if path == WS_PATH:
        body = b"this endpoint speaks WebSocket only"
        await _respond(connection, stream, 426, body, headers=[("upgrade", "websocket")])
    elif path in routes and request.method == b"GET":
        content_type, body = routes[path]()
        await _respond(connection, stream, 200, body, content_type)
    else:
        await _respond(connection, stream, 404, b"the WebSocket endpoint is " + WS_PATH.encode())


def _remote(stream: trio.abc.Stream) -> str:
    if isinstance(stream, trio.SocketStream):
        try:
            host, port, *_ = stream.socket.getpeername()
        except OSError:  # already reset
            return "?"
        return f"{host}:{port}"
    return repr(stream)
