"""The WebSocket transport, on trio-websocket's public API."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, NoReturn

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, WebSocketServer

from ._base import Transport, TransportClosed

logger = logging.getLogger(__name__)

WS_PATH: Final = "/ws"
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds for the opening handshake
CLOSE_TIMEOUT: Final = 5.0  # seconds to wait for the closing handshake


class WebSocketTransport:
    """A :class:`Transport` over a trio-websocket connection."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self.remote = str(ws.remote)

    async def receive(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except ConnectionClosed:
            raise TransportClosed from None

    async def send(self, frame: str) -> None:
        try:
            await self._ws.send_message(frame)
        except ConnectionClosed:
            raise TransportClosed from None

    async def ping(self) -> None:
        try:
            await self._ws.ping()
        except ConnectionClosed:
            raise TransportClosed from None

    async def aclose(self, code: int, reason: str) -> None:
        await self._ws.aclose(code, reason)


async def serve_websocket(
    handler: Callable[[Transport], Awaitable[None]],
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    *,
    max_frame_size: int,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Accept WebSocket connections at ``/ws`` on ``listeners`` and run ``handler`` for each.

    Other paths get HTTP 404. ``handler`` must not raise; anything it does raise is logged so
    one connection can never stop the server. Never returns unless cancelled.
    """

    async def accept(request: WebSocketRequest) -> None:
        if request.path.partition("?")[0] != WS_PATH:
            await request.reject(404, body=b"WebSocket endpoint is " + WS_PATH.encode())
            return
        ws = await request.accept()
        try:
            await handler(WebSocketTransport(ws))
        except Exception:
            logger.exception("connection from %s failed", ws.remote)

    server = WebSocketServer(
        accept,
        listeners,
        max_message_size=max_frame_size,
        connect_timeout=HANDSHAKE_TIMEOUT,
        disconnect_timeout=CLOSE_TIMEOUT,
    )
    await server.run(task_status=task_status)
