"""A lean WebSocket client link for load generation: one read per batch of frames.

Shares the framing of the server (``transport``); sends masked frames as RFC 6455
requires of clients, answers pings, never negotiates compression. No reader task: the owner
calls :meth:`Link.receive_batch` in its own loop, which is what keeps thousands of simulated
clients cheap.
"""

from __future__ import annotations

import base64
import contextlib
import os
import urllib.parse
from typing import Final

import trio

from client import LinkClosed
from protocol import ABNORMAL_CLOSURE
from transport import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameParser,
    build_frame,
    close_payload,
    parse_close,
)

RECEIVE_SIZE: Final = 256 * 1024
# Masking protects browsers' intermediaries from script-chosen bytes; a load generator has none
# to protect, and a zero key spares it a random key and an XOR per frame. Servers cannot tell.
MASK_KEY: Final = bytes(4)
MAX_MESSAGE: Final = 16 * 1024 * 1024


def split_url(url: str) -> tuple[str, int, str]:
    """Host, port and request target of a ``ws://`` URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"expected a ws:// URL, got {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, target


class Link:
    """One client connection after the opening handshake."""

    def __init__(self, stream: trio.SocketStream, received: bytes) -> None:
        self._stream = stream
        self._parser = FrameParser(masked=False, max_size=MAX_MESSAGE)
        self._pending = received
        self._write_lock = trio.StrictFIFOLock()  # senders and the reader's pongs share the stream
        self._unread: list[str] = []

    @classmethod
    async def open(cls, url: str) -> Link:
        """Connect and upgrade; raises ``OSError`` or :class:`LinkClosed` on failure."""
        host, port, target = split_url(url)
        stream = await trio.open_tcp_stream(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        try:
            await stream.send_all(request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await stream.receive_some(4096)
                if not chunk or len(head) > 16384:
                    raise LinkClosed(ABNORMAL_CLOSURE, "no handshake response")
                head += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.aclose_forcefully(stream)
            raise LinkClosed(ABNORMAL_CLOSURE, "reset during the handshake") from None
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            await trio.aclose_forcefully(stream)
            raise LinkClosed(ABNORMAL_CLOSURE, head.split(b"\r\n", 1)[0].decode("latin-1"))
        return cls(stream, rest)

    async def send(self, text: str) -> None:
        await self._write(build_frame(TEXT, text.encode(), mask=True, key=MASK_KEY))

    def unread(self, texts: list[str]) -> None:
        """Put messages back; the next :meth:`receive_batch` returns them first."""
        self._unread = texts + self._unread

    async def receive_batch(self) -> list[str]:
        """The text messages of the next read (at least one); raises :class:`LinkClosed`."""
        if self._unread:
            texts, self._unread = self._unread, []
            return texts
        while True:
            data, self._pending = self._pending, b""
            if not data:
                try:
                    data = await self._stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    raise LinkClosed(ABNORMAL_CLOSURE, "connection lost")
            try:
                frames = self._parser.feed(data)
            except FrameError as error:
                raise LinkClosed(error.code, error.reason) from None
            texts = []
            for opcode, payload in frames:
                if opcode == TEXT:
                    texts.append(payload.decode())
                elif opcode == PING:
                    await self._write(build_frame(PONG, payload, mask=True))
                elif opcode == CLOSE:
                    code, reason = parse_close(payload)
                    await self._write(build_frame(CLOSE, close_payload(code, ""), mask=True))
                    raise LinkClosed(code, reason)
            if texts:
                return texts

    async def _write(self, frame: bytes) -> None:
        try:
            async with self._write_lock:
                await self._stream.send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise LinkClosed(ABNORMAL_CLOSURE, "reset") from None

    async def close(self) -> None:
        """Send a close frame and drop the connection without waiting for the answer."""
        with trio.move_on_after(1), contextlib.suppress(LinkClosed):
            await self._write(build_frame(CLOSE, close_payload(1000, ""), mask=True))
        await trio.aclose_forcefully(self._stream)

    async def abort(self) -> None:
        """Vanish without a close frame, like a killed tab."""
        await trio.aclose_forcefully(self._stream)
