"""The simulated network: where clients open links to the server, and where faults are made."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final, NoReturn

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

    def __init__(self, send_buffer_size: int = 256 * 1024, *, record: bool = True) -> None:
        self._send_buffer_size = send_buffer_size  # bytes per link toward its client
        self._digest = hashlib.blake2b(digest_size=16) if record else None  # of every frame
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
            link = SimLink(client_id, self._latency.get(client_id, 0.0), self._send_buffer_size)
            self._links[client_id] = link
            await self._incoming.send(link)
            if self._digest is None:
                return link.client
            return _RecordedLink(link.client, client_id, self._digest)

        return open_link

    def digest(self) -> str:
        """Hex digest of every frame the clients sent and received (see ``Simulation.digest``)."""
        if self._digest is None:
            raise RuntimeError("this network records no digest (Network(record=False))")
        return self._digest.hexdigest()

    # ---------------------------------------------------------------- faults

    def drop(self, client_id: str) -> None:
        """Kill the client's link abruptly: no close frame, both sides see it die."""
        if (link := self._links.get(client_id)) is not None:
            link.drop()

    def partition(self, client_id: str, seconds: float) -> None:
        """Cut the client off for ``seconds``: nothing gets through either way and new links fail.

        Frames sent meanwhile are delayed, not lost: they arrive when the partition heals, as TCP
        would deliver them, if the link is still alive by then. A partition longer than two
        heartbeat intervals makes both sides give the link up; then the client reconnects."""
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


class _RecordedLink:
    """A client's link that adds every frame, with its virtual time, to the network's digest."""

    def __init__(self, link: Link, client_id: str, digest: Any) -> None:
        self._link, self._id, self._digest = link, client_id, digest

    def _record(self, way: str, frame: str) -> None:
        self._digest.update(f"{trio.current_time()!r} {self._id} {way} {len(frame)}:".encode())
        self._digest.update(frame.encode())

    async def send(self, frame: str) -> None:
        self._record(">", frame)
        await self._link.send(frame)

    async def receive(self) -> str:
        frame = await self._link.receive()
        self._record("<", frame)
        return frame

    async def aclose(self) -> None:
        self._record("x", "")
        await self._link.aclose()
