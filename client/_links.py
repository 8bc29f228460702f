"""Links: what the client sends frames over. WebSocket URLs, or any opener you pass."""

from __future__ import annotations

import itertools
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

import trio
import trio_websocket

from protocol import ABNORMAL_CLOSURE

from ._errors import LinkClosed

# A snapshot or a state event can be as large as the server's state limit (1 MiB by default)
# plus the session around it: more than trio-websocket's 1 MiB default.
MAX_FRAME: Final = 16 * 1024 * 1024  # bytes
MESSAGE_QUEUE_SIZE: Final = 64  # frames trio-websocket holds before its reader waits for ours


class Link(Protocol):
    """A bidirectional text-frame link. ``receive``/``send`` raise :class:`LinkClosed`."""

    async def send(self, frame: str) -> None: ...

    async def receive(self) -> str: ...

    async def aclose(self) -> None: ...


Opener = Callable[[trio.Nursery], Awaitable[Link]]
"""Opens a new link; background tasks of the link go into the nursery given, and the link
dies with that nursery. It may block for as long as the network lets it: the client bounds it
with its ``connect_timeout``."""


class WebSocketLink:
    """A :class:`Link` over trio-websocket (no compression is offered)."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws

    async def send(self, frame: str) -> None:
        try:
            await self._ws.send_message(frame)
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from None

    async def receive(self) -> str:
        try:
            frame = await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from None
        return frame if isinstance(frame, str) else frame.decode()

    async def aclose(self) -> None:
        await self._ws.aclose()


def _closed(exc: trio_websocket.ConnectionClosed) -> LinkClosed:
    if exc.reason is None:
        return LinkClosed(ABNORMAL_CLOSURE)
    return LinkClosed(exc.reason.code, exc.reason.reason or "")


def _split(url: str) -> tuple[bool, str, int, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"expected a ws:// or wss:// URL, got {url!r}")
    secure = parts.scheme == "wss"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return secure, parts.hostname, parts.port or (443 if secure else 80), target


def websocket_opener(url: str) -> Opener:
    """An opener for a ``ws://`` or ``wss://`` URL.

    The TCP (and TLS) stream is owned by the nursery the client passes: it is closed when that
    nursery ends, whether the opening handshake finished, failed or was cancelled. (Opening
    with trio-websocket's ``connect_websocket`` would leave a server that accepts TCP and then
    closes or never answers the upgrade waiting forever, and the socket open.)
    """
    secure, host, port, target = _split(url)
    host_header = host if port in (80, 443) else f"{host}:{port}"

    async def open_link(nursery: trio.Nursery) -> Link:
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
        if secure:
            context = ssl.create_default_context()
            stream = await trio.open_ssl_over_tcp_stream(
                host, port, ssl_context=context, https_compatible=True
            )
        else:
            stream = await trio.open_tcp_stream(host, port)
        nursery.start_soon(_close_when_done, stream)
        try:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                host_header,
                target,
                message_queue_size=MESSAGE_QUEUE_SIZE,
                max_message_size=MAX_FRAME,
            )
        except (trio_websocket.HandshakeError, trio_websocket.ConnectionClosed) as exc:
            raise OSError(f"cannot connect to {url}: {exc!r}") from exc
        return WebSocketLink(ws)

    return open_link


def failover_opener(urls: Sequence[str]) -> Opener:
    """An opener that tries the nodes of a cluster in turn (``ws://`` or ``wss://`` URLs):
    each attempt opens the URL after the one the previous attempt used, so a client whose node
    died reconnects to the next one, and resumes there (any node serves any session). Behind
    a load balancer, pass its one URL instead."""
    if not urls:
        raise ValueError("failover_opener needs at least one URL")
    openers = [websocket_opener(url) for url in urls]
    turn = itertools.count()

    async def open_link(nursery: trio.Nursery) -> Link:
        return await openers[next(turn) % len(openers)](nursery)

    return open_link


async def _close_when_done(stream: trio.abc.AsyncResource) -> None:
    """Hold ``stream`` open until the link's nursery ends, then close it at once."""
    try:
        await trio.sleep_forever()
    finally:
        await trio.aclose_forcefully(stream)
