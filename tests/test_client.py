"""The Python client: requests, typed events and errors, and reconnection without loss."""

from __future__ import annotations

import pytest
import trio

import protocol
from client import Backoff, ConnectionEvent, ConnectionLost, ConnectionState, RequestError, connect
from sim import open_simulation

from .conftest import start_tcp
from .proxy import via_proxy


async def next_of(client, kind, guard: float = 3600):
    """The next event of class ``kind``, skipping others (and the initial ``connected``).

    ``guard`` bounds the wait (virtual seconds under the autojump clock, real ones otherwise).
    """
    with trio.fail_after(guard):
        async for event in client.events:
            if isinstance(event, kind) and getattr(event, "state", None) != "connected":
                return event
    raise AssertionError("events ended")


async def test_requests_and_typed_events(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host", name="Ann") as host:
        created = await host.create_session(state={"q": 1})
        code = created["code"]
        assert host.role == "host" and host.session_code == code
        async with sim.client("p1", name="Bob") as p1:
            await p1.join(code)
            joined = await next_of(host, protocol.ParticipantJoined)
            assert joined.participant.name == "Bob"
            await host.create_room("poll", kind="poll")
            room = await next_of(p1, protocol.RoomCreated)
            assert room.room == "poll" and room.kind == "poll"
            seq = await p1.send("poll", {"vote": "B"})
            message = await next_of(host, protocol.RoomMessageEvent)
            assert message.seq == seq and message.data == {"vote": "B"}
            assert message.sender == p1.participant_id
            assert await host.patch_state({"q": 2}, expected_version=0) == 1
            updated = await next_of(p1, protocol.StateUpdated)
            assert updated.patch == {"q": 2} and updated.version == 1
            with pytest.raises(RequestError) as error:
                await p1.set_state({"x": 1})
            assert error.value.code == "forbidden"
            with pytest.raises(RequestError) as error:
                await host.set_state({"x": 1}, expected_version=0)
            assert error.value.code == "conflict" and error.value.details == {"version": 1}
            await host.close()
            closed = await next_of(p1, protocol.SessionClosed)
            assert closed.reason == "manual_stop"
        assert sim.supervisor.codes() == []


async def test_reconnects_and_replays_what_it_missed(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        code = (await host.create_session())["code"]
        await host.create_room("r")
        async with sim.client("p1") as p1:
            joined = await p1.join(code)
            assert [r["name"] for r in joined["rooms"]] == ["r"]
            before = p1.last_seq
            sim.network.drop("p1")
            assert (await next_of(p1, ConnectionEvent)).state is ConnectionState.RECONNECTING
            seqs = [await host.send("r", i) for i in range(5)]
            resumed = await next_of(p1, ConnectionEvent)
            assert resumed.state is ConnectionState.RESUMED and resumed.recovered is True
            replayed = [await p1.events.receive() for _ in range(resumed.replayed)]
            messages = [e for e in replayed if isinstance(e, protocol.RoomMessageEvent)]
            assert [m.data for m in messages] == list(range(5))
            assert [e.seq for e in replayed] == list(range(before + 1, before + 1 + len(replayed)))
            assert messages[-1].seq == seqs[-1]
            await host.send("r", "live")
            live = await next_of(p1, protocol.RoomMessageEvent)
            assert live.data == "live" and live.seq == seqs[-1] + 2  # +1 was p1's own "back"


async def test_a_partition_longer_than_the_heartbeat(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        code = (await host.create_session())["code"]
        async with sim.client("p1") as p1:
            await p1.join(code)
            sim.network.partition("p1", 55)  # both sides give up on the link after 50 s
            assert (await next_of(p1, ConnectionEvent)).state is ConnectionState.RECONNECTING
            away = await next_of(host, protocol.ParticipantAway)
            assert away.participant_id == p1.participant_id
            resumed = await next_of(p1, ConnectionEvent)
            assert resumed.state is ConnectionState.RESUMED and resumed.recovered is True
            assert trio.current_time() >= 55
            back = await next_of(host, protocol.ParticipantBack)
            assert back.participant_id == p1.participant_id


async def test_a_replaced_client_stops_instead_of_fighting(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        code = (await host.create_session())["code"]
        async with sim.client("tab1", token="same-user-token") as tab1:
            await tab1.join(code)
            async with sim.client("tab2", token="same-user-token") as tab2:
                await tab2.join(code)  # the same user from another tab takes the seat
                lost = await next_of(tab1, ConnectionEvent)
                assert lost.state is ConnectionState.LOST and "replaced" in lost.reason
                with pytest.raises(ConnectionLost):
                    await tab1.send("r", 1)
                assert tab2.participant_id == tab1.participant_id


async def test_gives_up_when_the_seat_is_gone(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        code = (await host.create_session())["code"]
        async with sim.client("p1") as p1:
            await p1.join(code)
            sim.network.partition("p1", 300)  # far beyond the 60 s participant grace
            left = await next_of(host, protocol.ParticipantLeft)
            assert left.reason == "timeout"
            lost = await next_of(p1, ConnectionEvent)
            while lost.state is not ConnectionState.LOST:
                lost = await next_of(p1, ConnectionEvent)
            assert lost.reason == "resume refused: unauthorized"


async def test_connect_gives_up_after_the_limit(autojump_clock) -> None:
    async with open_simulation() as sim:
        sim.network.partition("nobody", 3600)
        with pytest.raises(ConnectionLost):
            async with sim.client("nobody", backoff=Backoff(give_up_after=60)):
                pass
        assert trio.current_time() >= 60


async def test_reconnects_over_loopback_after_its_tcp_connection_dies(nursery) -> None:
    harness = await start_tcp(nursery)
    proxy, proxied = await via_proxy(nursery, harness)
    url = f"ws://127.0.0.1:{proxied.server.port}/ws"
    async with connect(url, backoff=Backoff(base=0.05, cap=0.2)) as host:
        code = (await host.create_session())["code"]
        await host.create_room("r")
        async with connect(url, backoff=Backoff(base=0.05, cap=0.2)) as p1:
            await p1.join(code)
            proxy.reset()  # both clients' TCP connections die under them
            for client in (host, p1):
                reconnecting = await next_of(client, ConnectionEvent, guard=10)
                assert reconnecting.state is ConnectionState.RECONNECTING
                resumed = await next_of(client, ConnectionEvent, guard=10)
                assert resumed.state is ConnectionState.RESUMED and resumed.recovered is True
            await host.send("r", "after the reset")
            message = await next_of(p1, protocol.RoomMessageEvent, guard=10)
            assert message.data == "after the reset"
            assert harness.supervisor.codes() == [code]


async def test_a_request_made_while_reconnecting_waits_for_the_link(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        await host.create_session()
        sim.network.set_latency("host", 1.0)  # a handshake now takes 2 s
        sim.network.drop("host")
        assert (await next_of(host, ConnectionEvent)).state is ConnectionState.RECONNECTING
        with trio.fail_after(600):
            created = await _request_across_a_failed_handshake(sim, host)
        assert created and created[0]["created"] is True


async def _request_across_a_failed_handshake(sim, host) -> list:
    created: list = []
    async with trio.open_nursery() as nursery:

        async def request() -> None:
            created.append(await host.create_room("late"))

        nursery.start_soon(request)  # waits for a link
        await trio.sleep(1.0)  # the next link's hello is under way...
        sim.network.drop("host")  # ...and dies: the request must still get through later
    return created
