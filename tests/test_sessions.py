"""The create / join / rooms / close flow, end to end over loopback sockets."""

from __future__ import annotations

import re

import trio

from actors import CODE_ALPHABET, Config

from .conftest import start_tcp


async def test_hello_reply_and_stable_identity(tcp) -> None:
    raw = await tcp.raw()
    hello = await raw.ok("hello", name="Ada", token="a-long-client-secret-token")
    assert hello["name"] == "Ada"
    assert hello["heartbeat_interval"] == 25.0
    assert hello["connection_id"].startswith("c_") and hello["user_id"].startswith("u_")
    again = await tcp.client(token="a-long-client-secret-token")
    other = await tcp.client()
    assert again.hello["user_id"] == hello["user_id"]
    assert again.hello["connection_id"] != hello["connection_id"]
    assert other.hello["user_id"] != hello["user_id"]


async def test_requests_before_hello_are_refused(tcp) -> None:
    raw = await tcp.raw()
    error = await raw.error("session:create")
    assert error["code"] == "unauthorized"
    await raw.ok("hello")
    assert (await raw.error("hello"))["code"] == "bad_request"
    assert await raw.ok("ping") == {}


async def test_ping_without_ref_gets_pong(tcp) -> None:
    client = await tcp.client()
    await client.send({"type": "ping"})
    assert await client.receive() == {"type": "pong"}


async def test_create_gives_a_code_and_reuses_the_hosts_session(tcp) -> None:
    host = await tcp.client(token="host-token-0123456789")
    created = await host.ok("session:create")
    length = Config().code_length
    assert re.fullmatch(f"[{CODE_ALPHABET}]{{{length}}}", created["code"])
    assert created["role"] == "host" and created["reused"] is False
    assert created["seq"] == 0 and created["epoch"] and created["resume_token"]
    assert created["participants"] == [
        {"id": created["participant_id"], "name": "guest", "role": "host", "presence": "online"}
    ]
    again = await host.ok("session:create")
    assert again["code"] == created["code"] and again["reused"] is True
    assert again["participant_id"] == created["participant_id"]
    # the same user from another tab gets the same session, never a second code
    tab = await tcp.client(token="host-token-0123456789")
    assert (await tab.ok("session:create"))["code"] == created["code"]
    assert tcp.supervisor.codes() == [created["code"]]
    assert await host.closed() == 4002  # the older tab is told it was replaced


async def test_join_by_code(tcp) -> None:
    host = await tcp.client("Teacher")
    code = (await host.ok("session:create"))["code"]
    student = await tcp.client("Student")
    assert (await student.error("session:join", code="ZZZZZ"))["code"] == "not_found"
    joined = await student.ok("session:join", code=code.lower())
    assert joined["code"] == code and joined["role"] == "participant"
    assert joined["seq"] == 1 and joined["host_id"] != joined["participant_id"]
    assert {p["name"] for p in joined["participants"]} == {"Teacher", "Student"}
    event = await host.event("session:participantJoined")
    assert event["session"] == code and event["seq"] == 1 and event["at"]
    assert event["participant"] == {
        "id": joined["participant_id"],
        "name": "Student",
        "role": "participant",
        "presence": "online",
    }


async def test_one_connection_holds_seats_in_several_sessions(tcp) -> None:
    host, (student,), code = await tcp.session(1)
    await host.ok("session:createRoom", room="r")
    other_host = await tcp.client()
    other = (await other_host.ok("session:create"))["code"]
    await other_host.ok("session:createRoom", room="r")
    await student.ok("session:join", code=other)
    # Two seats: a session-scoped request must say which session it is for.
    error = await student.error("room:message", room="r", data=1)
    assert error["code"] == "bad_request" and error["message"].startswith("session: required")
    await student.ok("room:message", room="r", data="to the first", session=code)
    await student.ok("room:message", room="r", data="to the second", session=other.lower())
    await host.event("session:roomCreated")
    assert (await host.event("room:message"))["data"] == "to the first"
    await other_host.event("session:roomCreated")
    await other_host.event("session:participantJoined")
    assert (await other_host.event("room:message"))["data"] == "to the second"
    own = await student.ok("session:create")  # and it may host a third
    assert own["code"] not in (code, other)
    # Each seat is its own: leaving one keeps the others.
    await student.ok("session:leave", session=other)
    error = await student.error("room:message", room="r", data=1, session=other)
    assert error["code"] == "bad_request" and "not seated" in error["message"]


async def test_seats_per_connection_are_bounded(nursery) -> None:
    harness = await start_tcp(nursery, max_sessions_per_connection=2)
    hosts = [await harness.client(f"h{i}") for i in range(3)]
    codes = [(await h.ok("session:create"))["code"] for h in hosts]
    student = await harness.client("s")
    await student.ok("session:join", code=codes[0])
    await student.ok("session:join", code=codes[1])
    error = await student.error("session:join", code=codes[2])
    assert error["code"] == "session_limit"
    assert (await student.error("session:create"))["code"] == "session_limit"


async def test_rooms_lifecycle(tcp) -> None:
    host, (a, b), _code = await tcp.session(2)
    assert (await a.error("session:createRoom", room="poll"))["code"] == "forbidden"
    room = await host.ok("session:createRoom", room="poll", kind="poll")
    assert room["created"] is True and room["kind"] == "poll" and len(room["members"]) == 3
    for client in (host, a, b):
        event = await client.event("session:roomCreated")
        assert event["room"] == "poll" and sorted(event["members"]) == sorted(room["members"])
    again = await host.ok("session:createRoom", room="poll", kind="other")
    assert again["created"] is False and again["kind"] == "poll"

    late = await tcp.client("late")
    joined = await late.ok("session:join", code=_code)
    assert joined["participant_id"] in joined["rooms"][0]["members"]
    for client in (host, a, b):
        await client.event("session:participantJoined")

    assert (await a.error("session:closeRoom", room="poll"))["code"] == "forbidden"
    assert (await host.error("session:closeRoom", room="nope"))["code"] == "not_found"
    await host.ok("session:closeRoom", room="poll")
    for client in (host, a, b, late):
        assert (await client.event("session:roomClosed"))["room"] == "poll"
    assert (await a.error("room:message", room="poll", data=1))["code"] == "not_found"


async def test_room_limit() -> None:
    async with trio.open_nursery() as nursery:
        harness = await start_tcp(nursery, max_rooms=2)
        host = await harness.client()
        await host.ok("session:create")
        await host.ok("session:createRoom", room="a")
        await host.ok("session:createRoom", room="b")
        error = await host.error("session:createRoom", room="c")
        assert error["code"] == "room_limit"
        nursery.cancel_scope.cancel()


async def test_room_message_goes_to_the_others_only(tcp) -> None:
    host, (a, b), _code = await tcp.session(2)
    await host.ok("session:createRoom", room="qa", kind="qa")
    for client in (host, a, b):
        await client.event("session:roomCreated")
    sent = await a.ok("room:message", room="qa", data={"q": "why?"})
    for client in (host, b):
        event = await client.event("room:message")
        assert event["seq"] == sent["seq"]
        assert event["from"] == a.seat["participant_id"]
        assert event["data"] == {"q": "why?"} and event["room"] == "qa"
    # the sender got no copy: its next frame is the reply to this ping
    assert await a.ok("ping") == {} and a.events == []
    assert (await a.error("room:message", room="nope", data=1))["code"] == "not_found"


async def test_leave_and_close(tcp) -> None:
    host, (a, b), code = await tcp.session(2)
    assert (await a.error("session:close"))["code"] == "forbidden"
    await a.ok("session:leave")
    for client in (host, b):
        event = await client.event("session:participantLeft")
        assert event["reason"] == "left"
    assert (await a.error("room:message", room="x", data=1))["code"] == "bad_request"

    handle = tcp.supervisor.lookup(code)
    await host.ok("session:close")
    for client in (host, b):
        closed = await client.event("session:closed")
        assert closed["reason"] == "manual_stop"
        assert closed["duration_s"] >= 0 and closed["started_at"] <= closed["ended_at"]
    await handle.finished.wait()
    assert tcp.supervisor.codes() == []
    error = await b.error("room:message", room="x", data=1)
    assert error["code"] == "session_closed"
    assert (await a.error("session:join", code=code))["code"] == "not_found"
    # the connection outlives its session: it can start another one
    assert (await host.ok("session:create"))["code"] != code


async def test_session_full() -> None:
    async with trio.open_nursery() as nursery:
        harness = await start_tcp(nursery, max_participants=2)
        _host, _joined, code = await harness.session(1)
        late = await harness.client()
        assert (await late.error("session:join", code=code))["code"] == "session_full"
        nursery.cancel_scope.cancel()


async def test_a_participants_seq_has_no_gaps(tcp) -> None:
    """Events plus the replies to one's own messages account for every seq."""
    host, (a, b), _code = await tcp.session(2)
    await host.ok("session:createRoom", room="r")
    seen = {a_event["seq"] for a_event in [await a.event("session:roomCreated")]}
    await b.event("session:roomCreated")
    await host.event("session:roomCreated")
    for i in range(10):
        sender = (a, b, host)[i % 3]
        reply = await sender.ok("room:message", room="r", data=i)
        if sender is a:
            seen.add(reply["seq"])
    await host.ok("state:patch", patch={"n": 1})
    await a.ok("ping")
    seen.update(event["seq"] for event in a.events)
    # seq 1 and 2 were the two joins; 3 the room, 4-13 the messages, 14 the patch
    assert sorted(seen) == list(range(3, 15))


async def test_replies_leave_in_request_order(tcp) -> None:
    """A reply made by the connection (a decode error, a ping) never overtakes the reply of a
    request sent before it that an actor answers, nor do two actors' replies race."""
    host, (student,), code = await tcp.session(1)
    other_host = await tcp.client()
    other = (await other_host.ok("session:create"))["code"]
    await student.ok("session:join", code=other)
    for i in range(25):
        frames = [
            {"type": "session:createRoom", "ref": f"{i}a", "room": f"r{i}", "session": code},
            {"type": "room:message", "ref": f"{i}b", "room": 5},  # bad field: answered here
            {"type": "state:set", "ref": f"{i}c", "state": {}, "session": other},  # forbidden
            {"type": "ping", "ref": f"{i}d"},
        ]
        for frame in frames:
            await host.send(frame) if frame["type"] == "session:createRoom" else None
        await host.send({"type": "ping", "ref": f"{i}z"})
        for frame in frames[1:]:
            await student.send(frame)
        await student.send({"type": "session:createRoom", "ref": f"{i}e", "room": "x"})
        refs = []
        while len(refs) < 4:
            message = await student.receive()
            if message["type"] == "reply":
                refs.append(message["ref"])
        assert refs == [f"{i}b", f"{i}c", f"{i}d", f"{i}e"]
        host_refs = []
        while len(host_refs) < 2:
            message = await host.receive()
            if message["type"] == "reply":
                host_refs.append(message["ref"])
        assert host_refs == [f"{i}a", f"{i}z"]


async def test_a_fresh_create_closes_the_old_session_and_opens_a_new_one(tcp) -> None:
    host = await tcp.client("host", token="teacher-1")
    code = (await host.ok("session:create"))["code"]
    student = await tcp.client("ann")
    await student.ok("session:join", code=code)
    await host.drop()  # a "practice again" page: a new connection, the same user
    again = await tcp.client("host", token="teacher-1")
    reused = await again.ok("session:create")
    assert reused["code"] == code and reused["reused"] is True  # a reload gets the old one back
    fresh = await again.ok("session:create", fresh=True, meta={"job": {"minutes": 5}})
    assert fresh["code"] != code and fresh["reused"] is False
    assert fresh["meta"] == {"job": {"minutes": 5}} and fresh["participants"][0]["role"] == "host"
    events = [await student.event() for _ in range(3)]
    assert [e["type"] for e in events] == [
        "session:hibernating",  # the old connection dropped
        "session:resumed",  # the reload took the seat back
        "session:closed",
    ]
    assert events[2]["reason"] == "replaced_by_host"
    error = await student.error("room:message", room="r", data=1)
    assert error["code"] == "session_closed" and "replaced_by_host" in error["message"]


async def test_meta_travels_with_sessions_rooms_and_participants(tcp) -> None:
    host = await tcp.client("host")
    seat = await host.ok("session:create", meta={"class": "7b"})
    code = seat["code"]
    assert seat["meta"] == {"class": "7b"}
    student = await tcp.client("ann")
    joined = await student.ok("session:join", code=code, meta={"character": "elf"})
    assert joined["meta"] == {"class": "7b"}
    event = await host.event("session:participantJoined")
    assert event["participant"]["meta"] == {"character": "elf"}
    room = await host.ok("session:createRoom", room="poll", kind="poll", meta={"widget": 42})
    assert room["meta"] == {"widget": 42}
    assert (await student.event("session:roomCreated"))["meta"] == {"widget": 42}
    late = await tcp.client("late")
    snapshot = await late.ok("session:join", code=code)
    assert snapshot["rooms"][0]["meta"] == {"widget": 42}
    assert {p["name"]: p.get("meta") for p in snapshot["participants"]} == {
        "host": None,
        "ann": {"character": "elf"},
        "late": None,
    }
    error = await late.error("session:createRoom", room="x", meta={"b": "x" * 5000})
    assert (
        error["code"] == "bad_request"
        and "meta: must encode to at most 4096 bytes" in error["message"]
    )
