"""The simulated link's server end keeps the transport contract: one byte budget, no waiting."""

from __future__ import annotations

import pytest
import trio

from client import LinkClosed
from sim import SimLink
from transport import SendBufferFull, TransportClosed


async def test_the_server_end_refuses_past_its_byte_budget(autojump_clock: object) -> None:
    link = SimLink("c", send_buffer_size=100)
    frame = "x" * 38  # 40 bytes counted with the frame overhead
    assert [link.server.send_nowait(frame) for _ in range(4)] == [True, True, True, False]
    assert link.unreceived == 120  # within budget before the third: budget plus one frame
    assert await link.client.receive() == frame  # the client reads one: room again
    assert link.server.send_nowait(frame)
    assert not link.server.send_nowait(frame)


async def test_a_ping_over_the_budget_overflows_the_link(autojump_clock: object) -> None:
    link = SimLink("c", send_buffer_size=100)
    assert link.server.send_nowait("x" * 98)  # exactly the budget
    assert link.server.send_nowait("y" * 8)  # within budget: accepted, now over it
    with pytest.raises(SendBufferFull):
        await link.server.ping()
    assert not link.server.send_nowait("z")
    with pytest.raises(SendBufferFull):
        await link.server.receive()
    await link.server.aclose(4008, "slow consumer")  # the close frame is always queued
    assert await link.client.receive() == "x" * 98
    assert await link.client.receive() == "y" * 8
    with pytest.raises(LinkClosed) as closed:
        await link.client.receive()
    assert (closed.value.code, closed.value.reason) == (4008, "slow consumer")


async def test_pings_are_answered_by_the_client_end(autojump_clock: object) -> None:
    link = SimLink("c", latency=0.5)
    async with trio.open_nursery() as nursery:

        async def client() -> None:
            with pytest.raises(LinkClosed):
                await link.client.receive()  # answers the ping by itself

        async def server() -> None:
            with pytest.raises(TransportClosed):
                await link.server.receive()  # reads the pong

        nursery.start_soon(client)
        nursery.start_soon(server)
        started = trio.current_time()
        await link.server.ping()
        assert trio.current_time() - started == pytest.approx(1.0)  # there and back
        assert link.unreceived == 0
        await link.server.aclose(1000, "")
