"""An in-memory listener, so the real server runs without sockets (tests, simulation)."""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

StreamPair = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose connections come from :meth:`connect` in the same process.

    ``pair`` makes each connection's two stream ends: the default buffers without bound, while
    ``trio.testing.lockstep_stream_pair`` buffers nothing, so a client that stops reading
    pushes back on the server at once (for slow-consumer tests).
    """

    def __init__(
        self, pair: StreamPair = trio.testing.memory_stream_pair, backlog: int = 128
    ) -> None:
        self._pair = pair
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](backlog)

    async def connect(self) -> trio.abc.Stream:
        """Open a connection; returns the client end of the stream pair."""
        client, server = self._pair()
        await self._send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        try:
            return await self._receive.receive()
        except trio.ClosedResourceError:
            raise trio.ClosedResourceError("listener closed") from None

    async def aclose(self) -> None:
        self._receive.close()
        self._send.close()
        await trio.lowlevel.checkpoint()
