"""The simulated network's faults: latency, stalled readers, crashed actors."""

from __future__ import annotations

from datetime import datetime

import pytest
import trio

import protocol
from actors import SIMULATED_EPOCH, Config
from client import ConnectionEvent, ConnectionState
from sim import open_simulation

from .test_client import next_of


async def test_latency_delays_each_way(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        code = (await host.create_session()).code
        await host.create_room("r")
        sim.network.set_latency("far", 0.2)
        async with sim.client("far") as far:
            start = trio.current_time()
            await far.join(code)
            assert trio.current_time() - start == pytest.approx(0.4)  # there and back
            sent_at = trio.current_time()
            await host.send("r", "hi")
            await next_of(far, protocol.RoomMessageEvent)
            assert trio.current_time() - sent_at == pytest.approx(0.2)


async def test_a_stalled_reader_is_cut_off_and_resumes_without_loss(autojump_clock) -> None:
    config = Config(send_buffer_size=16 * 1024, rate_limit=0)
    async with open_simulation(config) as sim, sim.client("host") as host:
        code = (await host.create_session()).code
        await host.create_room("r")
        async with sim.client("slow") as slow:
            await slow.join(code)
            sim.network.stall("slow", 5.0)
            for i in range(200):
                await host.send("r", i)
            assert sim.server.counters.slow_consumers == 1
            received = []
            while len(received) < 200:
                event = await next_of(slow, protocol.RoomMessageEvent)
                received.append(event.data)
            assert received == list(range(200))  # some live, the rest replayed after the resume
            assert (
                await next_of(host, protocol.ParticipantAway)
            ).participant_id == slow.participant_id


async def test_a_crashed_actor_tells_its_clients(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        code = (await host.create_session()).code
        async with sim.client("p") as p:
            await p.join(code)
            sim.crash(code)
            for client in (host, p):
                closed = await next_of(client, protocol.SessionClosed)
                assert closed.reason == "internal_error"
            assert sim.supervisor.codes() == []
            assert (await host.create_session()).code != code  # the server goes on


async def test_connection_states_of_a_drop(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        await host.create_session()
        sim.network.drop("host")
        states = [(await next_of(host, ConnectionEvent)).state for _ in range(2)]
        assert states == [ConnectionState.RECONNECTING, ConnectionState.RESUMED]


def virtual(iso: str) -> float:
    """A display timestamp of a simulation as virtual seconds."""
    return datetime.fromisoformat(iso).timestamp() - SIMULATED_EPOCH


async def test_display_times_agree_with_the_enforced_deadlines(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        await trio.sleep(12.5)  # virtual time is not 0 at the start
        created = await host.create_session()
        opened_at = trio.current_time()
        assert virtual(created.started_at) == pytest.approx(opened_at, abs=1e-3)
        async with sim.client("p1") as p1:
            await p1.join(created.code)
        away = await next_of(host, protocol.ParticipantAway)  # p1 closed its link: grace
        assert virtual(away.at) == pytest.approx(trio.current_time(), abs=1e-3)
        grace = sim.server.config.participant_grace
        assert virtual(away.until) == pytest.approx(virtual(away.at) + grace, abs=1e-3)
        left = await next_of(host, protocol.ParticipantLeft)
        assert left.reason == "timeout"  # enforced exactly when the displayed `until` said
        assert trio.current_time() == pytest.approx(virtual(away.until), abs=1e-3)
        assert virtual(left.at) == pytest.approx(virtual(away.until), abs=1e-3)
        await host.close()
        closed = await next_of(host, protocol.SessionClosed)
        assert virtual(closed.started_at) == pytest.approx(opened_at, abs=1e-3)
        assert virtual(closed.ended_at) == pytest.approx(trio.current_time(), abs=1e-3)
        assert closed.duration_s == pytest.approx(trio.current_time() - opened_at, abs=1e-3)
