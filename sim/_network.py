"""The simulated network: where clients open links to the server, and where faults are made."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn

import trio

from client import Link, Opener
from transport import Transport

from ._links import SimLink

logger = logging.getLogger(__name__)

ACCEPT_BACKLOG: Final = 1024  # links waiting for the server to take them


class Network:
    """In-process network between the real server and simulated clients. No sockets.

    Faults address a client by the id it connected with and act on its current link.
    """

    def __init__(self, send_buffer_size: int = 256 * 1024) -> None:
        self._send_buffer_size = send_buffer_size  # bytes per link toward its client
        self._incoming, self._accepted = trio.open_memory_channel[SimLink](ACCEPT_BACKLOG)
        self._links: dict[str, SimLink] = {}
        self._cut_off_until: dict[str, float] = {}
        self._latency: dict[str, float] = {}

    async def serve(
        self,
        handler: Callable[[Transport], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """The server's accept loop (pass as ``serve(..., accept=network.serve)``)."""

        async def run(link: SimLink) -> None:
            try:
                await handler(link.server)
            except Exception:
                logger.exception("simulated connection %s failed", link.client_id)

        with self._accepted:
            async with trio.open_nursery() as nursery:
                task_status.started()
                async for link in self._accepted:
                    nursery.start_soon(run, link)
        raise RuntimeError("the network's accept channel closed")  # pragma: no cover

    def opener(self, client_id: str) -> Opener:
        """How the client ``client_id`` opens links (pass to :func:`client.connect`)."""

        async def open_link(_nursery: trio.Nursery) -> Link:
            if trio.current_time() < self._cut_off_until.get(client_id, -math.inf):
                await trio.lowlevel.checkpoint()
                raise OSError(f"{client_id}: network unreachable (partitioned)")
            link = SimLink(
                client_id, self._latency.get(client_id, 0.0), self._send_buffer_size
            )
            self._links[client_id] = link
            await self._incoming.send(link)
            return link.client

        return open_link

    # ---------------------------------------------------------------- faults

    def drop(self, client_id: str) -> None:
        """Kill the client's link abruptly: no close frame, both sides see it die."""
        if (link := self._links.get(client_id)) is not None:
            link.drop()

    def partition(self, client_id: str, seconds: float) -> None:
        """Cut the client off for ``seconds``: frames vanish both ways and new links fail, so
        heartbeats expire on both sides; afterwards the client can reconnect."""
        until = trio.current_time() + seconds
        self._cut_off_until[client_id] = until
        if (link := self._links.get(client_id)) is not None:
            link.dark_until = until

    def set_latency(self, client_id: str, seconds: float) -> None:
        """Delay every frame of the client's links by ``seconds`` each way."""
        self._latency[client_id] = seconds
        if (link := self._links.get(client_id)) is not None:
            link.latency = seconds

    def stall(self, client_id: str, seconds: float) -> None:
        """The client reads nothing for ``seconds`` (a slow consumer, a frozen tab)."""
        if (link := self._links.get(client_id)) is not None:
            link.stall_until = trio.current_time() + seconds
