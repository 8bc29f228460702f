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


async def test_idle_session_is_reaped(nursery, autojump_clock) -> None:
    harness = await start_memory(nursery, host_grace=3 * 3600, idle_timeout=1800)
    host, _joined, code = await harness.session(0)
    handle = harness.supervisor.lookup(code)
    await host.ok("state:set", state={"q": 1})
    last_activity = trio.current_time()
    await host.ws.aclose()
    await handle.finished.wait()
    assert trio.current_time() - last_activity == pytest.approx(1800, abs=0.01)
    assert harness.supervisor.codes() == []
    assert harness.supervisor.statistics().closed == 1


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


async def start_unread(nursery: trio.Nursery, outbox_size: int) -> Harness:
    """A server whose clients read only when a test asks, with no buffering on the way but the
    client stack's own and ``outbox_size`` frames (no send buffer), so slow consumers show."""
    return await start_memory(
        nursery,
        pair=trio.testing.lockstep_stream_pair,
        pump=False,
        outbox_size=outbox_size,
        rate_limit=0,
        send_buffer_size=0,
    )


async def test_slow_consumer_is_cut_off_and_the_rest_keep_receiving(
    nursery, autojump_clock
) -> None:
    harness = await start_unread(nursery, outbox_size=8)
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
        for i in range(50):  # slow reads nothing from here on
            await host.ok("room:message", room="r", data=i)
    assert received == list(range(50))
    assert others == ["session:participantAway"]
    away = next(e for e in host.events if e["type"] == "session:participantAway")
    assert away["participant_id"] == slow.seat["participant_id"]
    assert harness.server.counters.slow_consumers == 1
    assert await slow.closed() == 4008


async def test_nothing_follows_session_closed_even_past_a_slow_consumer(
    nursery, autojump_clock
) -> None:
    harness = await start_unread(nursery, outbox_size=4)
    host, (_slow,), _code = await harness.session(1)
    await host.ok("session:createRoom", room="r")
    await host.event("session:roomCreated")
    # slow reads nothing: its client stack takes 2 frames, 1 is in flight, 1 waits in the
    # transport's send buffer and 4 fill its outbox
    for i in range(7):
        await host.ok("room:message", room="r", data=i)
    assert harness.server.counters.slow_consumers == 0
    await host.ok("session:close")  # the one frame that no longer fits
    closed = await host.event("session:closed")
    assert harness.server.counters.slow_consumers == 1
    assert await host.ok("ping") == {}
    assert host.events == [], f"events after session:closed (seq {closed['seq']}): {host.events}"
