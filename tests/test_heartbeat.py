"""Dead links are found by heartbeats, end to end over loopback (real clock, short intervals)."""

from __future__ import annotations

import attrs
import trio

from .conftest import Harness, start_tcp

INTERVAL = 0.5  # seconds: short, so the real-clock wait stays small


class BlackholeProxy:
    """A TCP relay whose links can go silent either way without closing (a pulled cable)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.forward = {"to_server": True, "to_client": True}

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, server, "to_server")
            nursery.start_soon(self._pump, server, client, "to_client")

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


async def test_a_silent_link_is_dropped_within_two_intervals(nursery) -> None:
    harness = await start_tcp(nursery, heartbeat_interval=INTERVAL)
    proxy, proxied = await via_proxy(nursery, harness)
    host, _none, code = await harness.session(0)
    student = await proxied.client()
    joined = await student.ok("session:join", code=code)
    await host.event("session:participantJoined")
    proxy.forward.update(to_server=False, to_client=False)  # no close frame, no reset
    cut_at = trio.current_time()
    away = await host.event("session:participantAway")
    assert away["participant_id"] == joined["participant_id"]
    assert trio.current_time() - cut_at <= 2 * INTERVAL + 0.5  # slack for a busy CI machine
    assert harness.server.counters.heartbeat_timeouts == 1
    assert await host.ok("ping") == {}  # the rest of the session is unaffected


async def test_application_pings_count_as_liveness(nursery) -> None:
    """Browsers cannot answer WebSocket pings by hand; their app-level pings keep them alive."""
    harness = await start_tcp(nursery, heartbeat_interval=INTERVAL)
    proxy, proxied = await via_proxy(nursery, harness)
    host, _none, code = await harness.session(0)
    client = await proxied.client()
    await client.ok("session:join", code=code)
    await host.event("session:participantJoined")
    proxy.forward["to_client"] = False  # server pings never arrive, so no pong goes back
    for _ in range(8):  # four intervals of application pings, as a browser client sends them
        await client.send({"type": "ping"})
        await trio.sleep(INTERVAL / 2)
    await host.ok("ping")
    assert host.events == [] and harness.server.counters.heartbeat_timeouts == 0
    proxy.forward["to_server"] = False  # now the client falls silent too
    silent_at = trio.current_time()
    await host.event("session:participantAway")
    assert trio.current_time() - silent_at <= 2 * INTERVAL + 0.5
    assert harness.server.counters.heartbeat_timeouts == 1
