"""The Python client: requests, typed events and errors, and reconnection without loss."""

from __future__ import annotations

import logging

import pytest
import trio

import protocol
from client import (
    Backoff,
    ConnectionEvent,
    ConnectionLost,
    ConnectionState,
    Link,
    LinkClosed,
    LostReason,
    RequestError,
    connect,
)
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
        assert isinstance(created, protocol.SeatReply) and created.state == {"q": 1}
        code = created.code
        assert created.role == "host" and created.resume_token.startswith(f"{code}.")
        assert host.role == "host" and host.session_code == code
        async with sim.client("p1", name="Bob") as p1:
            await p1.join(code)
            joined = await next_of(host, protocol.ParticipantJoined)
            assert joined.participant.name == "Bob"
            opened = await host.create_room("poll", kind="poll")
            assert opened == protocol.RoomReply(
                name="poll",
                kind="poll",
                members=[host.participant_id, p1.participant_id],
                created=True,
            )
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
        code = (await host.create_session()).code
        await host.create_room("r")
        async with sim.client("p1") as p1:
            joined = await p1.join(code)
            assert [r.name for r in joined.rooms] == ["r"]
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
        code = (await host.create_session()).code
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
        code = (await host.create_session()).code
        async with sim.client("tab1", token="same-user-token") as tab1:
            await tab1.join(code)
            async with sim.client("tab2", token="same-user-token") as tab2:
                await tab2.join(code)  # the same user from another tab takes the seat
                lost = await next_of(tab1, ConnectionEvent)
                assert lost.state is ConnectionState.LOST and "replaced" in lost.reason
                assert lost.cause is LostReason.REPLACED
                with pytest.raises(ConnectionLost):
                    await tab1.send("r", 1)
                assert tab2.participant_id == tab1.participant_id


async def test_gives_up_when_the_seat_is_gone(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        code = (await host.create_session()).code
        async with sim.client("p1") as p1:
            await p1.join(code)
            sim.network.partition("p1", 300)  # far beyond the 60 s participant grace
            left = await next_of(host, protocol.ParticipantLeft)
            assert left.reason == "timeout"
            lost = await next_of(p1, ConnectionEvent)
            while lost.state is not ConnectionState.LOST:
                lost = await next_of(p1, ConnectionEvent)
            assert lost.reason == "resume refused: unauthorized"
            assert (lost.cause, lost.error_code) == (LostReason.RESUME_REFUSED, "unauthorized")


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
        code = (await host.create_session()).code
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
        assert created and created[0].created is True


async def _request_across_a_failed_handshake(sim, host) -> list:
    created: list = []
    async with trio.open_nursery() as nursery:

        async def request() -> None:
            created.append(await host.create_room("late"))

        nursery.start_soon(request)  # waits for a link
        await trio.sleep(1.0)  # the next link's hello is under way...
        sim.network.drop("host")  # ...and dies: the request must still get through later
    return created


# ---------------------------------------------------------------- every connect step is bounded


@pytest.mark.parametrize("dead_end", ["close", "silent"])
async def test_a_reconnect_that_meets_a_dead_end_backs_off_and_comes_back(
    nursery, dead_end: str
) -> None:
    """A proxy with no backend (accept, close) or a blackhole (accept, silence) costs one
    connect timeout per attempt, then backoff: the client is back soon after the network."""
    harness = await start_tcp(nursery)
    proxy, proxied = await via_proxy(nursery, harness)
    url = f"ws://127.0.0.1:{proxied.server.port}/ws"
    async with connect(url, backoff=Backoff(base=0.05, cap=0.1), connect_timeout=0.5) as host:
        code = (await host.create_session()).code
        proxy.new_links = dead_end
        proxy.reset()
        assert (await next_of(host, ConnectionEvent, guard=5)).state is ConnectionState.RECONNECTING
        with trio.fail_after(5):  # without a bound, the first dead end would hold it for good
            await proxy.wait_accepted(1 + 3)
        proxy.new_links = "relay"
        resumed = await next_of(host, ConnectionEvent, guard=2)  # a timeout plus a backoff
        assert resumed.state is ConnectionState.RESUMED and resumed.recovered is True
        assert resumed.session == code and harness.supervisor.codes() == [code]


class _ClosingOpener:
    """Wraps the simulated network's opener: after :meth:`close_next`, the client's next frame
    is lost and its link ends as if the server had sent close ``code`` (the server sees a drop)."""

    def __init__(self, sim, client_id: str) -> None:
        self._sim, self._id = sim, client_id
        self._open = sim.network.opener(client_id)
        self.code: int | None = None
        self.drop = True

    def close_next(self, code: int, *, drop: bool = True) -> None:
        """End the link at the next frame with ``code``; ``drop=False`` leaves the server's
        end of it open (the server learns of it later)."""
        self.code, self.drop = code, drop

    async def __call__(self, nursery: trio.Nursery) -> Link:
        return _ClosingLink(await self._open(nursery), self)


class _ClosingLink:
    def __init__(self, link: Link, owner: _ClosingOpener) -> None:
        self._link, self._owner = link, owner

    async def send(self, frame: str) -> None:
        await self._link.send(frame)

    async def receive(self) -> str:
        frame = await self._link.receive()
        if (code := self._owner.code) is not None:
            self._owner.code = None
            if self._owner.drop:
                self._owner._sim.network.drop(self._owner._id)
            raise LinkClosed(code, "test")
        return frame

    async def aclose(self) -> None:
        await self._link.aclose()


@pytest.mark.parametrize(
    ("code", "states"),
    [
        (1012, [ConnectionState.RECONNECTING, ConnectionState.RESUMED]),  # server restarting
        (1001, [ConnectionState.RECONNECTING, ConnectionState.RESUMED]),  # going away
        (4002, [ConnectionState.LOST]),  # replaced: never fight the other tab
    ],
)
async def test_what_each_close_code_makes_the_client_do(autojump_clock, code, states) -> None:
    async with open_simulation() as sim, sim.client("host") as host:
        room_code = (await host.create_session()).code
        await host.create_room("r")
        opener = _ClosingOpener(sim, "p1")
        async with connect(opener) as p1:
            await p1.join(room_code)
            opener.close_next(code)
            await host.send("r", "lost with the link")
            seen = [(await next_of(p1, ConnectionEvent)).state for _ in states]
            assert seen == states
            if states[-1] is ConnectionState.RESUMED:  # and what was lost is replayed
                message = await next_of(p1, protocol.RoomMessageEvent)
                assert message.data == "lost with the link"
            else:
                with pytest.raises(ConnectionLost):
                    await p1.send("r", "too late")


# ---------------------------------------------------------------- several sessions, one connection


async def test_one_connection_holds_seats_in_several_sessions(autojump_clock) -> None:
    async with (
        open_simulation() as sim,
        sim.client("a") as a,
        sim.client("b") as b,
        sim.client("m", token="m-token") as m,
    ):
        code_a, code_b = (await a.create_session()).code, (await b.create_session()).code
        await a.create_room("r")
        await b.create_room("r")
        mine = (await m.create_session(meta={"title": "mine"})).code
        assert (await m.join(code_a, meta={"seat": 1})).code == code_a
        await m.join(code_b)
        assert [s.code for s in m.seats] == [mine, code_a, code_b]
        with pytest.raises(RequestError, match=r"^bad_request: session: required"):
            await m.send("r", "which one?")
        seq_a = await m.send("r", "to a", session=code_a)
        heard = await next_of(a, protocol.RoomMessageEvent)
        assert (heard.session, heard.data, heard.seq) == (code_a, "to a", seq_a)
        room = await m.create_room("own", "qa", {"topic": "x"}, session=mine)
        assert room.created is True and room.meta == {"topic": "x"}

        sim.network.drop("m")  # every seat resumes on the next link, each with its own position
        await a.send("r", "missed in a")
        await b.send("r", "missed in b")
        resumed: dict[str | None, ConnectionEvent] = {}
        missed: set[tuple[str, str]] = set()
        with trio.fail_after(60):
            async for event in m.events:
                if isinstance(event, ConnectionEvent) and event.state is ConnectionState.RESUMED:
                    resumed[event.session] = event
                elif isinstance(event, protocol.RoomMessageEvent):
                    missed.add((event.session, event.data))
                if len(resumed) == 3 and len(missed) == 2:
                    break
        assert set(resumed) == {mine, code_a, code_b}
        assert all(e.recovered for e in resumed.values())
        assert missed == {(code_a, "missed in a"), (code_b, "missed in b")}

        async with sim.client("m2", token="m-token") as m2:  # the same user, another tab
            await m2.join(code_b)
            ended = await next_of(m, protocol.SeatEnded)
            assert ended == protocol.SeatEnded(session=code_b, reason="replaced")
            assert [s.code for s in m.seats] == [mine, code_a]
            assert await m.send("r", "still here", session=code_a) > seq_a


async def test_a_busy_seat_is_resumed_after_the_wait_the_server_asks_for(
    autojump_clock, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="client")
    async with open_simulation() as sim, sim.client("host") as host:
        code = (await host.create_session()).code
        await host.create_room("r")
        opener = _ClosingOpener(sim, "p1")
        async with connect(opener, backoff=Backoff(base=0.01)) as p1:
            await p1.join(code)
            resumed_at = []
            for text in ("one", "two"):
                # the client leaves a link the server still thinks alive: the next resume
                # replaces it, and the one after that comes too soon (seat_busy)
                opener.close_next(1012, drop=False)
                await host.send("r", text)
                assert (await next_of(p1, ConnectionEvent)).state is ConnectionState.RECONNECTING
                resumed = await next_of(p1, ConnectionEvent)
                assert resumed.state is ConnectionState.RESUMED, resumed
                resumed_at.append(trio.current_time())
            interval = sim.server.config.seat_replace_interval
            assert resumed_at[1] - resumed_at[0] >= interval
            received = [(await next_of(p1, protocol.RoomMessageEvent)).data for _ in range(2)]
            assert received == ["one", "two"]
            assert "busy, retry in" in caplog.text  # the second resume did meet seat_busy


async def test_on_event_hands_events_over_in_the_reader(autojump_clock) -> None:
    seen: list[object] = []
    replayed = trio.Event()

    def on_event(event: object) -> None:
        seen.append(event)
        if isinstance(event, protocol.RoomMessageEvent) and event.data == "while away":
            replayed.set()

    async with open_simulation() as sim, sim.client("host") as host:
        code = (await host.create_session()).code
        await host.create_room("r")
        async with sim.client("p1", on_event=on_event) as p1:
            await p1.join(code)
            seq = await host.send("r", "hi")
            sim.network.drop("p1")
            await host.send("r", "while away")
            with trio.fail_after(60):
                await replayed.wait()
            with pytest.raises(trio.WouldBlock):
                p1.events.receive_nowait()  # nothing went to the channel
        states = [e.state for e in seen if isinstance(e, ConnectionEvent)]
        assert states == ["connected", "reconnecting", "resumed"]
        messages = [e for e in seen if isinstance(e, protocol.RoomMessageEvent)]
        assert [m.data for m in messages] == ["hi", "while away"]
        assert messages[0].seq == seq < messages[1].seq


async def test_an_error_in_on_event_ends_the_client(autojump_clock) -> None:
    def explode(event: object) -> None:
        if isinstance(event, protocol.ParticipantJoined):
            raise RuntimeError("handler bug")

    async with open_simulation() as sim, sim.client("host") as host:
        code = (await host.create_session()).code
        with pytest.RaisesGroup(
            pytest.RaisesExc(RuntimeError, match=r"^handler bug$"), flatten_subgroups=True
        ):
            async with sim.client("watcher", on_event=explode) as watcher:
                await watcher.join(code)
                async with sim.client("p1") as p1:
                    await p1.join(code)
                    await trio.sleep_forever()


async def test_a_fresh_session_replaces_the_one_the_host_had(autojump_clock) -> None:
    async with open_simulation() as sim, sim.client("host", token="teacher") as host:
        old = await host.create_session(state={"round": 1})
        again = await host.create_session()
        assert (again.code, again.reused) == (old.code, True)
        fresh = await host.create_session(fresh=True, meta={"title": "after the break"})
        assert fresh.code != old.code and fresh.meta == {"title": "after the break"}
        closed = await next_of(host, protocol.SessionClosed)
        assert (closed.session, closed.reason) == (old.code, "replaced_by_host")
        assert [s.code for s in host.seats] == [fresh.code] and host.session_code == fresh.code
        assert sim.supervisor.codes() == [fresh.code]
