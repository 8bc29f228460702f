"""The WebSocket transport, on trio-websocket's public API."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, NoReturn

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from ._base import Transport, TransportClosed

logger = logging.getLogger(__name__)

WS_PATH: Final = "/ws"
_NOT_FOUND: Final = b"the WebSocket endpoint is " + WS_PATH.encode()
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds for the opening handshake


class WebSocketTransport:
    """A :class:`Transport` over a trio-websocket connection and the stream under it."""

    def __init__(self, ws: WebSocketConnection, stream: trio.abc.Stream) -> None:
        self._ws = ws
        self._stream = stream
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

    def send_nowait(self, frame: str) -> bool:
        # trio-websocket has no synchronous send; every frame goes through the writer task.
        return False

    async def ping(self) -> None:
        try:
            await self._ws.ping()
        except ConnectionClosed:
            raise TransportClosed from None

    async def aclose(self, code: int, reason: str) -> None:
        await self._ws.aclose(code, reason)

    async def abort(self) -> None:
        await trio.aclose_forcefully(self._stream)


async def serve_websocket(
    handler: Callable[[Transport], Awaitable[None]],
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    *,
    max_frame_size: int,
    task_status: trio.TaskStatus[Sequence[trio.abc.Listener[trio.abc.Stream]]] = (
        trio.TASK_STATUS_IGNORED
    ),
) -> NoReturn:
    """Accept WebSocket connections at ``/ws`` on ``listeners`` and run ``handler`` for each.

    Other paths get HTTP 404; a handshake not done in ``HANDSHAKE_TIMEOUT`` is dropped.
    ``handler`` should not raise; anything it does raise is logged, so one connection can never
    stop the server. Reports the listeners once accepting. Never returns unless cancelled.

    Resource handling: each stream is closed (forcefully if need be) when its handler returns.
    """

    async def on_stream(stream: trio.abc.Stream) -> None:
        try:
            async with trio.open_nursery() as nursery:  # holds trio-websocket's reader task
                ws: WebSocketConnection | None = None
                with trio.move_on_after(HANDSHAKE_TIMEOUT):
                    request = await wrap_server_stream(
                        nursery, stream, max_message_size=max_frame_size
                    )
                    if request.path.partition("?")[0] != WS_PATH:
                        await request.reject(404, body=_NOT_FOUND)
                        nursery.cancel_scope.cancel()
                        return
                    ws = await request.accept()
                if ws is None:
                    nursery.cancel_scope.cancel()
                    return
                try:
                    await handler(WebSocketTransport(ws, stream))
                except Exception:
                    logger.exception("connection from %s failed", ws.remote)
                nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(on_stream, list(listeners), task_status=task_status)
