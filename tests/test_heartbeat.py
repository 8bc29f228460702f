"""Dead links are found by heartbeats, end to end over loopback (real clock, short intervals)."""

from __future__ import annotations

import trio

from .conftest import start_tcp
from .proxy import via_proxy

INTERVAL = 0.5  # seconds: short, so the real-clock wait stays small


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
