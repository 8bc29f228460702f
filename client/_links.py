"""Links: what the client sends frames over. WebSocket URLs, or any opener you pass."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import trio
import trio_websocket

from ._errors import LinkClosed

# A snapshot or a state event can be as large as the server's state limit (1 MiB by default)
# plus the session around it: more than trio-websocket's 1 MiB default.
MAX_FRAME: Final = 16 * 1024 * 1024  # bytes


class Link(Protocol):
    """A bidirectional text-frame link. ``receive``/``send`` raise :class:`LinkClosed`."""

    async def send(self, frame: str) -> None: ...

    async def receive(self) -> str: ...

    async def aclose(self) -> None: ...


Opener = Callable[[trio.Nursery], Awaitable[Link]]
"""Opens a new link; background tasks of the link go into the nursery given."""


class WebSocketLink:
    """A :class:`Link` over trio-websocket (no compression is offered)."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws

    async def send(self, frame: str) -> None:
        try:
            await self._ws.send_message(frame)
        except trio_websocket.ConnectionClosed as exc:
            raise LinkClosed(exc.reason.code, exc.reason.reason or "") from None

    async def receive(self) -> str:
        try:
            frame = await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise LinkClosed(exc.reason.code, exc.reason.reason or "") from None
        return frame if isinstance(frame, str) else frame.decode()

    async def aclose(self) -> None:
        await self._ws.aclose()


def websocket_opener(url: str) -> Opener:
    """An opener for a ``ws://`` or ``wss://`` URL."""

    async def open_link(nursery: trio.Nursery) -> Link:
        try:
            ws = await trio_websocket.connect_websocket_url(
                nursery, url, message_queue_size=64, max_message_size=MAX_FRAME
            )
        except (trio_websocket.HandshakeError, trio_websocket.ConnectionClosed) as exc:
            raise OSError(f"cannot connect to {url}: {exc!r}") from exc
        return WebSocketLink(ws)

    return open_link
