"""A TCP relay for loopback tests: links that go silent, or die, on command; and new
connections that are accepted and then closed, or accepted and never answered."""

from __future__ import annotations

import attrs
import trio

from .conftest import Harness


class BlackholeProxy:
    """A TCP relay whose links can go silent either way without closing (a pulled cable)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.forward = {"to_server": True, "to_client": True}
        # What happens to each new connection: "relay" it to the server, "close" it at once
        # after accepting (a proxy with no backend), or keep it "silent" (a blackhole).
        self.new_links = "relay"
        self.accepted = 0  # connections accepted so far
        self._accepting = trio.Event()  # set (and replaced) on each accepted connection
        self._relays: set[trio.CancelScope] = set()

    def reset(self) -> None:
        """Kill every relayed TCP connection at once (both sides see it end, no close frame)."""
        for scope in self._relays:
            scope.cancel()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._relay, listeners)

    async def wait_accepted(self, count: int) -> None:
        """Wait until ``count`` connections have been accepted in all."""
        while self.accepted < count:
            await self._accepting.wait()

    async def _relay(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        self._accepting.set()
        self._accepting = trio.Event()
        if self.new_links == "close":
            await client.aclose()
            return
        if self.new_links == "silent":
            async with client:
                await trio.sleep_forever()
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        with trio.CancelScope() as scope:
            self._relays.add(scope)
            try:
                async with client, server, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, server, "to_server")
                    nursery.start_soon(self._pump, server, client, "to_client")
            finally:
                self._relays.discard(scope)

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, way: str) -> None:
        try:
            async for chunk in source:
                if self.forward[way]:
                    await sink.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def via_proxy(nursery: trio.Nursery, harness: Harness) -> tuple[BlackholeProxy, Harness]:
    """The proxy, and a harness whose clients connect through it."""
    proxy = BlackholeProxy(harness.server.port)
    port = await nursery.start(proxy.serve)
    return proxy, attrs.evolve(harness, server=attrs.evolve(harness.server, port=port))
