"""The actors without a server: a session actor, the supervisor, the event log and the token
bucket, driven through their inboxes with fake peers that record what they are handed."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from actors import (
    CloseSession,
    Command,
    Config,
    Environment,
    PeerGone,
    SessionActor,
    SessionHandle,
    Supervisor,
)
from actors._event_log import EventLog
from protocol import (
    CloseCode,
    CreateRoom,
    ProtocolError,
    Reply,
    RoomMessage,
    SessionClose,
    SessionCreate,
    SessionJoin,
    SessionResume,
    StatePatch,
    StateSet,
)
from transport import TokenBucket


class FakePeer:
    """Records frames and replies; refuses frames once ``capacity`` of them were taken."""

    def __init__(self, user_id: str, capacity: int = 10**9) -> None:
        self.connection_id = "c_" + user_id
        self.user_id = user_id
        self.name = user_id
        self.anonymous = False
        self.capacity = capacity
        self.frames: list[dict[str, Any]] = []
        self.replies: list[tuple[Any, Reply | ProtocolError]] = []
        self.done = 0
        self.ended: list[tuple[str, str, CloseCode | None]] = []

    def deliver(self, frame: str) -> bool:
        if len(self.frames) >= self.capacity:
            return False
        self.frames.append(orjson.loads(frame))
        return True

    def reply(self, ref: Any, data: Reply) -> None:
        self.replies.append((ref, data))

    def reply_error(self, ref: Any, error: ProtocolError) -> None:
        self.replies.append((ref, error))

    def command_done(self) -> None:
        self.done += 1

    def seat_ended(self, code: str, reason: str, close: CloseCode | None = None) -> None:
        self.ended.append((code, reason, close))

    def seat_granted(self, session: Any, participant_id: str) -> bool:
        return True

    def types(self) -> list[str]:
        return [f["type"] for f in self.frames]


class Rig:
    """One session actor running on its own inbox."""

    def __init__(self, nursery: trio.Nursery, config: Config | None = None) -> None:
        self.config = config or Config()
        send, self.inbox = trio.open_memory_channel[Any](self.config.inbox_size)
        self.handle = SessionHandle("ABCDE", "host-user", send)
        self.actor = SessionActor(self.handle, self.config, Environment.simulated(1))
        self.seats: dict[int, str | None] = {}
        nursery.start_soon(self._run)

    async def _run(self) -> None:
        await self.actor.run(self.inbox)
        self.handle.finished.set()

    async def command(self, peer: FakePeer, request: Any, pid: str | None = None) -> Command:
        cmd = Command(peer, len(peer.replies), request, pid)
        await self.handle.send(cmd)
        await trio.testing.wait_all_tasks_blocked()
        return cmd

    async def seated(self, peer: FakePeer, request: Any) -> str:
        cmd = await self.command(peer, request)
        assert cmd.seat is not None, peer.replies[-1]
        return cmd.seat


async def test_every_command_is_answered_once_and_marked_done(nursery, autojump_clock) -> None:
    rig = Rig(nursery)
    host = FakePeer("host-user")
    host_id = await rig.seated(host, SessionCreate())
    await rig.command(host, CreateRoom(room="r"), host_id)
    await rig.command(host, CreateRoom(room="r"), None)  # not a participant: refused
    await rig.command(host, StateSet(state={"a": 1}, expected_version=5), host_id)  # conflict
    assert host.done == 4 and len(host.replies) == 4
    assert [type(r).__name__ for _ref, r in host.replies] == [
        "SeatReply",
        "RoomReply",
        "ProtocolError",
        "ProtocolError",
    ]
    assert host.replies[3][1].code == "conflict"  # type: ignore[union-attr]
    assert rig.actor.state.version == 0 and list(rig.actor.state.rooms) == ["r"]


async def test_a_payload_that_cannot_be_encoded_is_refused_and_the_session_lives(
    nursery, autojump_clock
) -> None:
    """Defence in depth behind the codec's nesting limit: an event that cannot be encoded is a
    ``bad_request`` before anything is applied, never a crash and never a second reply."""
    rig = Rig(nursery)
    host, guest = FakePeer("host-user"), FakePeer("guest")
    host_id = await rig.seated(host, SessionCreate())
    guest_id = await rig.seated(guest, SessionJoin(code="ABCDE"))
    await rig.command(host, CreateRoom(room="r"), host_id)
    deep: Any = []
    for _ in range(300):  # orjson writes at most 254 levels
        deep = [deep]
    seq = rig.actor.state.seq
    await rig.command(guest, RoomMessage(room="r", data=deep), guest_id)
    await rig.command(host, StatePatch(patch={"x": deep}), host_id)
    assert [r.code for _ref, r in guest.replies[-1:]] == ["bad_request"]  # type: ignore[union-attr]
    assert host.replies[-1][1].code == "bad_request"  # type: ignore[union-attr]
    assert rig.actor.state.seq == seq and rig.actor.state.version == 0
    assert not rig.actor.closed and guest.done == 2 and len(guest.replies) == 2


async def test_nothing_follows_session_closed_even_past_a_slow_consumer(
    nursery, autojump_clock
) -> None:
    rig = Rig(nursery)
    host = FakePeer("host-user")
    host_id = await rig.seated(host, SessionCreate())
    slow = FakePeer("slow", capacity=2)
    slow_id = await rig.seated(slow, SessionJoin(code="ABCDE"))
    await rig.command(host, CreateRoom(room="r"), host_id)  # frame 1 for slow
    await rig.command(host, RoomMessage(room="r", data=1), host_id)  # frame 2: now it is full
    await rig.command(host, SessionClose(), host_id)  # session:closed is refused by slow
    assert host.types()[-1] == "session:closed"
    assert slow.types() == ["session:roomCreated", "room:message"]
    # The refused peer was not moved into a grace period after the close: no event followed.
    assert "session:participantAway" not in host.types()
    assert (rig.actor.state.code, "manual_stop", None) in slow.ended
    await rig.handle.finished.wait()
    assert slow_id in rig.actor.state.participants


async def test_a_replaced_seat_is_told_and_a_quick_second_takeover_is_damped(
    nursery, autojump_clock
) -> None:
    rig = Rig(nursery, Config(seat_replace_interval=2.0))
    host = FakePeer("host-user")
    await rig.seated(host, SessionCreate())
    tab1 = FakePeer("ann")
    await rig.seated(tab1, SessionJoin(code="ABCDE"))
    token = tab1.replies[-1][1].resume_token  # type: ignore[union-attr]
    tab2 = FakePeer("ann")
    await rig.seated(tab2, SessionResume(token=token))
    assert tab1.ended == [("ABCDE", "replaced", CloseCode.REPLACED)]
    tab3 = FakePeer("ann")
    cmd = await rig.command(tab3, SessionResume(token=token))
    error = tab3.replies[-1][1]
    assert cmd.seat is None and isinstance(error, ProtocolError) and error.code == "seat_busy"
    assert error.extra == {"retry_after_ms": 2000}
    assert tab2.ended == []  # the refused takeover changed nothing
    await trio.sleep(2.0)
    await rig.seated(tab3, SessionResume(token=token))
    assert tab2.ended == [("ABCDE", "replaced", CloseCode.REPLACED)]


async def test_gone_is_ignored_for_a_seat_taken_by_a_newer_connection(
    nursery, autojump_clock
) -> None:
    rig = Rig(nursery)
    host, a1, a2 = FakePeer("host-user"), FakePeer("ann"), FakePeer("ann")
    await rig.seated(host, SessionCreate())
    pid = await rig.seated(a1, SessionJoin(code="ABCDE"))
    await rig.seated(a2, SessionJoin(code="ABCDE"))  # the same user again takes the seat
    await rig.handle.send(PeerGone(a1, pid))
    await trio.testing.wait_all_tasks_blocked()
    assert "session:participantAway" not in host.types()
    await rig.handle.send(PeerGone(a2, pid))
    await trio.testing.wait_all_tasks_blocked()
    assert host.types()[-1] == "session:participantAway"


async def test_a_closed_session_is_freed_without_the_cycle_collector(
    nursery, autojump_clock
) -> None:
    """No reference cycle holds a closed session's state: it goes when its task ends."""
    gc.disable()
    try:
        rig = Rig(nursery)
        host = FakePeer("host-user")
        host_id = await rig.seated(host, SessionCreate(state={"big": "x" * 100_000}))
        await rig.command(host, CreateRoom(room="r"), host_id)
        ref = weakref.ref(rig.actor)
        state_ref = weakref.ref(rig.actor.state)
        await rig.handle.send(CloseSession("admin"))
        await rig.handle.finished.wait()
        del rig
        await trio.testing.wait_all_tasks_blocked()
        assert ref() is None and state_ref() is None
    finally:
        gc.enable()


async def test_supervisor_fresh_create_replaces_the_hosted_session(nursery, autojump_clock) -> None:
    supervisor: Supervisor = await nursery.start(Supervisor(Config(), Environment.simulated(3)).run)
    first = supervisor.open_session("u1")
    assert not first.reused and first.replaced is None
    again = supervisor.open_session("u1")
    assert again.reused and again.handle is first.handle
    fresh = supervisor.open_session("u1", fresh=True, meta={"job": 7})
    assert fresh.replaced is first.handle and fresh.handle is not first.handle
    assert supervisor.hosted("u1") == fresh.handle.code
    await first.handle.send(CloseSession("replaced_by_host"))
    await first.handle.finished.wait()
    assert first.handle.closed_reason == "replaced_by_host"
    assert supervisor.codes() == [fresh.handle.code]
    assert supervisor.hosted("u1") == fresh.handle.code


def test_seeded_supervisors_draw_the_same_codes() -> None:
    async def codes(seed: int) -> list[str]:
        async with trio.open_nursery() as nursery:
            supervisor = await nursery.start(Supervisor(Config(), Environment.simulated(seed)).run)
            drawn = [supervisor.open_session(f"u{i}").handle.code for i in range(5)]
            nursery.cancel_scope.cancel()
        return drawn

    assert trio.run(codes, 7) == trio.run(codes, 7) != trio.run(codes, 8)


async def test_event_log_is_bounded_by_count_bytes_and_age(autojump_clock) -> None:
    log = EventLog(max_events=100, max_bytes=1000, max_age=60)
    for seq in range(1, 11):
        log.append(seq, "x" * 150)  # 1,500 characters in all: only the last 6 fit
    assert len(log) == 6 and log.size == 900
    assert log.since(4, 10) == ["x" * 150] * 6
    assert log.since(3, 10) is None  # event 4 is gone: a snapshot instead
    log.append(11, "y" * 5000)  # larger than the whole budget: kept alone, so replay works
    assert len(log) == 1 and log.since(10, 11) == ["y" * 5000]
    await trio.sleep(61)
    assert log.since(10, 11) is None and len(log) == 0


async def test_token_bucket(autojump_clock) -> None:
    bucket = TokenBucket(rate=2, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    await trio.sleep(0.5)
    assert [bucket.take() for _ in range(2)] == [True, False]
    assert all(TokenBucket(rate=0, burst=1).take() for _ in range(100))


@pytest.mark.parametrize("depth", [32, 33])
def test_the_codec_refuses_nesting_past_the_limit(depth: int) -> None:
    from protocol import MAX_DEPTH, decode_request

    assert depth - 1 <= MAX_DEPTH <= depth
    frame = '{"type": "state:set", "state": {"a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}}"
    _ref, request = decode_request(frame)
    if depth <= MAX_DEPTH:
        assert isinstance(request, StateSet)
    else:
        assert isinstance(request, ProtocolError)
        assert request.message == f"state: nested deeper than {MAX_DEPTH} levels"
