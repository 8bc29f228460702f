"""Dead links are found by heartbeats, on the virtual clock: in-memory links whose directions can
be cut without a close frame or a reset, as a blackholing network does."""

from __future__ import annotations

import attrs
import trio
import trio.testing

from .conftest import Harness, start_memory

INTERVAL = 25.0  # seconds (virtual)


@attrs.define
class Switch:
    """Which directions of one link still carry bytes."""

    to_server: bool = True
    to_client: bool = True


class Wires:
    """Makes in-memory links (``pair``) and keeps each one's :class:`Switch`, in connect order."""

    def __init__(self) -> None:
        self.links: list[Switch] = []

    def pair(self) -> tuple[trio.abc.Stream, trio.abc.Stream]:
        switch = Switch()
        self.links.append(switch)
        up_send, up_receive = _one_way(switch, "to_server")
        down_send, down_receive = _one_way(switch, "to_client")
        return trio.StapledStream(up_send, down_receive), trio.StapledStream(down_send, up_receive)


def _one_way(switch: Switch, direction: str) -> tuple[trio.abc.SendStream, trio.abc.ReceiveStream]:
    send, receive = trio.testing.memory_stream_one_way_pair()

    async def pump() -> None:
        if getattr(switch, direction):
            trio.testing.memory_stream_pump(send, receive)
        else:
            send.get_data_nowait()  # lost on the way: no close frame, no reset
        await trio.lowlevel.checkpoint()

    send.send_all_hook = pump
    return send, receive


async def start(nursery: trio.Nursery) -> tuple[Harness, Wires]:
    wires = Wires()
    harness = await start_memory(nursery, pair=wires.pair, heartbeat_interval=INTERVAL)
    return harness, wires


async def test_a_silent_link_is_dropped_within_two_intervals(nursery, autojump_clock) -> None:
    harness, wires = await start(nursery)
    host, (student,), _code = await harness.session(1)  # links: host, student
    wires.links[1].to_server = wires.links[1].to_client = False
    cut_at = trio.current_time()
    away = await host.event("session:participantAway")
    assert away["participant_id"] == student.seat["participant_id"]
    assert INTERVAL < trio.current_time() - cut_at <= 2 * INTERVAL
    assert harness.server.counters.heartbeat_timeouts == 1
    assert await host.ok("ping") == {}  # the rest of the session is unaffected


async def test_a_client_that_stops_answering_sees_close_4003(nursery, autojump_clock) -> None:
    """The documented code reaches a client that still reads: the close frame is sent (best
    effort, bounded) before the link is dropped."""
    harness, wires = await start(nursery)
    host, (student,), _code = await harness.session(1)
    wires.links[1].to_server = False  # its pongs and frames never arrive; it still reads
    assert await student.closed() == 4003
    await host.event("session:participantAway")


async def test_application_pings_count_as_liveness(nursery, autojump_clock) -> None:
    """Browsers cannot answer WebSocket pings by hand; their app-level pings keep them alive."""
    harness, wires = await start(nursery)
    host, (client,), _code = await harness.session(1)
    wires.links[1].to_client = False  # server pings never arrive, so no pong goes back
    for _ in range(8):  # four intervals of application pings, as a browser client sends them
        await client.send({"type": "ping"})
        await trio.sleep(INTERVAL / 2)
    await host.ok("ping")
    assert host.events == [] and harness.server.counters.heartbeat_timeouts == 0
    wires.links[1].to_server = False  # now the client falls silent too
    silent_at = trio.current_time()
    await host.event("session:participantAway")
    assert trio.current_time() - silent_at <= 2 * INTERVAL
    assert harness.server.counters.heartbeat_timeouts == 1
