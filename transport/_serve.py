"""The accept loop: a handshake per connection, then the handler inside its transport."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, NoReturn

import h11
import trio

from ._base import Transport
from ._coalescer import WriteCoalescer
from ._handshake import HeadTooLarge, HttpRoute, handshake
from ._rate import FRAME_BURST, MAX_FRAME_RATE
from ._websocket import open_websocket_transport

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT: Final = 10.0  # seconds for the request head and the upgrade

Handler = Callable[[Transport], Awaitable[None]]


async def serve_websocket(
    handler: Handler,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    *,
    max_frame_size: int,
    send_buffer_size: int,
    http_routes: Mapping[str, HttpRoute] | None = None,
    max_frame_rate: float = MAX_FRAME_RATE,
    frame_burst: int = FRAME_BURST,
    on_write_pass: Callable[[float], None] | None = None,
    task_status: trio.TaskStatus[Sequence[trio.abc.Listener[trio.abc.Stream]]] = (
        trio.TASK_STATUS_IGNORED
    ),
) -> NoReturn:
    """Accept WebSocket connections at ``/ws`` on ``listeners`` and run ``handler`` for each.

    Plain ``GET`` and ``HEAD`` requests are answered from ``http_routes`` (see
    :data:`HttpRoute`: exact paths, or prefixes ending in ``/``); other paths and methods get
    404, a malformed request 400. At ``/ws``: no upgrade or a version other than 13 gets 426
    (naming version 13), an upgrade not by ``GET`` or a bad or repeated key 400, an upgrade over
    HTTP/1.0 505. A request head over 16 KiB, or not complete in ``HANDSHAKE_TIMEOUT``, is
    dropped. Compression is never negotiated.

    Each client may send ``max_frame_rate`` frames per second of any kind, ``frame_burst`` at
    once, and its messages are bounded by ``max_frame_size`` bytes; ``send_buffer_size`` is the
    byte budget of each connection's send queue (see :class:`WebSocketTransport`).
    ``on_write_pass`` gets each write pass's latency (see :class:`WriteCoalescer`).

    Resource handling: ``handler`` runs inside :func:`open_websocket_transport`, which closes
    the socket when the handler returns. ``handler`` should not raise; anything it does raise is
    logged, so one connection can never stop the server. Reports the listeners once accepting.
    Never returns unless cancelled.
    """
    routes = dict(http_routes or {})
    coalescer = WriteCoalescer(on_write_pass)

    async def on_stream(stream: trio.abc.Stream) -> None:
        try:
            upgrade = None  # stays None if the head does not arrive in time
            with trio.move_on_after(HANDSHAKE_TIMEOUT):
                upgrade = await handshake(stream, routes)
            if upgrade is None:
                return
            host, remote = _peer(stream)
            async with open_websocket_transport(
                stream,
                coalescer,
                received=upgrade.received,
                max_message_size=max_frame_size,
                send_buffer_size=send_buffer_size,
                max_frame_rate=max_frame_rate,
                frame_burst=frame_burst,
                remote=remote,
                client_host=host,
                forwarded_for=upgrade.forwarded_for,
            ) as transport:
                try:
                    await handler(transport)
                except Exception:
                    logger.exception("connection from %s failed", remote)
        except HeadTooLarge:
            logger.info("dropped %s: request head over 16 KiB", _peer(stream)[1])
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            pass  # the client went away mid-handshake
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(coalescer.run)
        await trio.serve_listeners(on_stream, list(listeners), task_status=task_status)
    raise AssertionError("unreachable: serve_listeners never returns")  # pragma: no cover


def _peer(stream: trio.abc.Stream) -> tuple[str, str]:
    """The peer's address, and ``host:port`` for logs (``memory`` for in-memory streams)."""
    if isinstance(stream, trio.SocketStream):
        try:
            host, port, *_ = stream.socket.getpeername()
        except OSError:  # already reset
            return "?", "?"
        return host, f"{host}:{port}"
    return "memory", repr(stream)
