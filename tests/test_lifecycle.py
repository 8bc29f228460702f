"""Timeouts, reaping, fault isolation and slow consumers, under the virtual clock."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from .conftest import Harness, start_memory


async def test_no_hello_closes_with_4001(memory, autojump_clock) -> None:
    raw = await memory.raw()
    start = trio.current_time()
    assert await raw.closed() == 4001
    assert 10.0 <= trio.current_time() - start < 10.1
    assert memory.server.counters.hello_timeouts == 1


@pytest.mark.parametrize("quiet_before_drop", [True, False])
async def test_a_host_that_drops_hibernates_however_quiet_it_was(
    nursery, autojump_clock, quiet_before_drop
) -> None:
    """The idle timer never shortens a grace period: it runs only while nobody is seated and
    connected and no grace is running (issue: a quiet host that dropped was closed at once)."""
    harness = await start_memory(nursery, host_grace=30, idle_timeout=2)
    host, _joined, code = await harness.session(0)
    handle = harness.supervisor.lookup(code)
    await host.ok("state:set", state={"q": 1})
    if quiet_before_drop:
        await trio.sleep(10)  # five idle timeouts without a request, the host connected
    await host.drop()
    dropped = trio.current_time()
    await handle.finished.wait()
    assert handle.closed_reason == "host_timeout"
    assert trio.current_time() - dropped == pytest.approx(30, abs=0.01)
    assert harness.supervisor.codes() == []


async def test_a_connected_client_keeps_a_session_alive(nursery, autojump_clock) -> None:
    harness = await start_memory(nursery, host_grace=3600, idle_timeout=1800)
    host, (student,), code = await harness.session(1)
    handle = harness.supervisor.lookup(code)
    start = trio.current_time()
    await host.ws.aclose()
    await student.event("session:hibernating")
    closed = await student.event("session:closed")
    assert closed["reason"] == "host_timeout"
    assert trio.current_time() - start == pytest.approx(3600, abs=0.01)
    await handle.finished.wait()


async def test_a_crashing_actor_closes_only_its_session(memory, autojump_clock, caplog) -> None:
    host_a, (a1,), code_a = await memory.session(1)
    host_b, (b1,), code_b = await memory.session(1)
    await host_b.ok("session:createRoom", room="r")
    await host_b.event("session:roomCreated")
    with caplog.at_level(logging.ERROR):
        memory.supervisor.lookup(code_a).inject_fault()
        for client in (host_a, a1):
            closed = await client.event("session:closed")
            assert closed["reason"] == "internal_error"
    assert any(code_a in r.getMessage() and r.exc_info for r in caplog.records)
    assert (await a1.error("room:message", room="r", data=1))["code"] == "session_closed"
    assert memory.supervisor.codes() == [code_b]
    assert memory.supervisor.statistics().crashed == 1
    # the other session did not notice
    await b1.event("session:roomCreated")
    await b1.ok("room:message", room="r", data="fine")
    assert (await host_b.event("room:message"))["data"] == "fine"
    # the crashed host can start again
    assert (await host_a.ok("session:create"))["code"] not in (code_a, code_b)


async def start_unread(nursery: trio.Nursery, send_buffer_size: int) -> Harness:
    """A server whose clients read only when a test asks, with no buffering on the way but the
    client stack's own and ``send_buffer_size`` bytes per connection, so slow consumers show."""
    return await start_memory(
        nursery,
        pair=trio.testing.lockstep_stream_pair,
        pump=False,
        rate_limit=0,
        send_buffer_size=send_buffer_size,
    )


async def test_slow_consumer_is_cut_off_and_the_rest_keep_receiving(
    nursery, autojump_clock
) -> None:
    harness = await start_unread(nursery, send_buffer_size=2000)
    host, (slow, fast), _code = await harness.session(2)
    await host.ok("session:createRoom", room="r")
    for client in (host, slow, fast):
        await client.event("session:roomCreated")
    received: list[int] = []
    others: list[str] = []

    async def read_fast() -> None:
        while len(received) < 50:
            event = await fast.event()
            if event["type"] == "room:message":
                received.append(event["data"])
            else:
                others.append(event["type"])

    async with trio.open_nursery() as readers:
        readers.start_soon(read_fast)
        for i in range(50):  # slow reads nothing from here on: 50 frames are ~6 KB
            await host.ok("room:message", room="r", data=i)
    assert received == list(range(50))
    assert others == ["session:participantAway"]
    away = next(e for e in host.events if e["type"] == "session:participantAway")
    assert away["participant_id"] == slow.seat["participant_id"]
    assert harness.server.counters.slow_consumers == 1
    assert await slow.closed() == 4008
