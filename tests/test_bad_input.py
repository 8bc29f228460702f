"""Bad input gets a documented error; the connection, its session and everyone else go on."""

from __future__ import annotations

import pytest
import trio
import trio_websocket

from .conftest import start_memory, start_tcp


async def test_malformed_frames_are_answered_and_harm_nothing(tcp) -> None:
    host, (student,), _code = await tcp.session(1)
    await host.ok("session:createRoom", room="r")
    await host.event("session:roomCreated")
    await student.event("session:roomCreated")
    for frame in ["{", "[]", '"text"', '{"ref": 9}', "{}"]:
        await student.ws.send_message(frame)
        reply = await student.receive()
        assert reply["type"] == "reply" and reply["ok"] is False
        assert reply["error"]["code"] == "bad_request", (frame, reply)
    error = await student.error("does:not:exist")
    assert error == {"code": "unknown_type", "message": "unknown type 'does:not:exist'"}
    error = await student.error("room:message", data=1)
    assert error["code"] == "bad_request" and "$.room" in error["message"]
    error = await student.error("room:message", room=5)
    assert error["code"] == "bad_request" and "expected str @ $.room" in error["message"]
    error = await student.error("session:leave", extra=True)
    assert error["code"] == "bad_request" and "extra" in error["message"]
    await student.ws.send_message(b'{"type": "ping", "ref": 1}')
    assert (await student.receive())["error"]["code"] == "bad_request"
    # still in the session, and so is everyone else
    await student.ok("room:message", room="r", data="still here")
    assert (await host.event("room:message"))["data"] == "still here"


async def test_an_oversize_frame_is_refused_with_its_ref(nursery) -> None:
    harness = await start_tcp(nursery, max_message_size=20_000, max_state_size=10_000)
    host, (student,), _code = await harness.session(1)
    await student.ws.send_message('{"type": "ping", "ref": "big", "pad": "' + "x" * 30_000 + '"}')
    reply = await student.receive()
    assert reply["ref"] == "big" and reply["ok"] is False
    assert reply["error"] == {
        "code": "too_large",
        "message": "frame over 20000 bytes",
        "limit": 20_000,
    }
    assert await student.ok("ping") == {}  # the frame was read whole: the link goes on
    await host.ok("ping")
    assert host.events == []


async def test_a_state_at_the_limit_fits_in_one_frame(tcp) -> None:
    """The default frame limit admits a state:set of any state that may be stored."""
    host, _joined, _code = await tcp.session(0)
    config = tcp.server.config
    filler = "x" * (config.max_state_size - len('{"blob":""}'))
    assert (await host.ok("state:set", state={"blob": filler}))["version"] == 1
    error = await host.error("state:set", state={"blob": filler + "x"})
    assert error["code"] == "too_large" and error["size"] == config.max_state_size + 1


async def test_huge_frame_is_cut_off_unread(nursery) -> None:
    harness = await start_tcp(nursery, max_message_size=20_000, max_state_size=10_000)
    client = await harness.client()
    try:  # over twice the limit, refused from its header: the close may come first
        await client.ws.send_message("x" * 300_000)
    except trio_websocket.ConnectionClosed as closed:
        assert closed.reason.code == 1009
    else:
        assert await client.closed() == 1009


async def test_rate_limit(nursery, autojump_clock) -> None:
    harness = await start_memory(nursery, rate_limit=1, rate_burst=3)
    client = await harness.client()
    for ref in range(5):  # at once: the burst of 3 (hello was one) passes, then the rate applies
        await client.send({"type": "ping", "ref": ref})
    replies = [await client.receive() for _ in range(5)]
    assert [r["ok"] for r in replies] == [True, True, False, False, False]
    assert replies[3]["error"] == {"code": "rate_limited", "message": "too many requests"}
    await trio.sleep(1.0)
    assert await client.ok("ping") == {}
    assert harness.server.counters.rate_limited == 3


async def test_malformed_frames_count_and_a_sustained_flood_is_closed(
    nursery, autojump_clock
) -> None:
    """Every frame counts against the rate, malformed or not; a client that goes on sending
    at more than twice the rate after ``rate_limited`` replies is closed with 1008."""
    harness = await start_memory(nursery, rate_limit=10, rate_burst=20)
    host, (student,), _code = await harness.session(1)
    replies = []
    for _ in range(30):
        await student.ws.send_message("{not json")
    for _ in range(30):
        replies.append((await student.receive())["error"]["code"])
    assert replies[:18] == ["bad_request"] * 18  # hello and join took one token each
    assert set(replies[18:]) == {"rate_limited"} and len(replies) == 30
    with pytest.raises(trio_websocket.ConnectionClosed):
        for _ in range(100):
            await student.ws.send_message("{not json")
    assert await student.closed() == 1008
    await host.event("session:participantAway")  # a drop like any other: the seat waits
    assert await host.ok("ping") == {}


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [
        ("room:message", {"room": "r"}, "data"),
        ("state:set", {}, "state"),
        ("state:patch", {}, "patch"),
    ],
)
async def test_a_deeply_nested_payload_is_refused_and_ends_nothing(
    tcp, kind: str, fields: dict, field: str
) -> None:
    """254 levels of nesting in a 560-byte frame used to be accepted, then crash the actor while
    encoding the event: a second reply to the same ref, and ``internal_error`` for everyone."""
    host, (student,), _code = await tcp.session(1)
    await host.ok("session:createRoom", room="r")
    deep = "[" * 254 + "]" * 254
    body = deep if field == "data" else '{"a": ' + deep + "}"
    await host.ws.send_message(
        f'{{"type": "{kind}", "ref": "deep", "{field}": {body}'
        + "".join(f', "{k}": "{v}"' for k, v in fields.items())
        + "}"
    )
    reply = await host.request("ping")  # everything up to here answered, in order
    replies = [e for e in host.events if e["type"] == "reply"]
    assert [r["ref"] for r in replies] == ["deep"] and reply["ok"]
    assert replies[0]["error"] == {
        "code": "bad_request",
        "message": f"{field}: nested deeper than 32 levels",
    }
    host.events = [e for e in host.events if e["type"] != "reply"]
    assert [e["type"] for e in host.events] == ["session:roomCreated"]
    host.events.clear()
    created = await host.ok("session:create", state={"a": [[[1]]]})  # a reused session: fine
    assert created["reused"] is True
    await student.ok("room:message", room="r", data=[[["still", "here"]]])
    assert (await host.event("room:message"))["data"] == [[["still", "here"]]]


async def test_a_create_with_deep_initial_state_is_refused(tcp) -> None:
    client = await tcp.client()
    deep: list = [1]
    for _ in range(32):
        deep = [deep]  # with the state object itself, 33 levels
    error = await client.error("session:create", state={"a": deep})
    assert error == {"code": "bad_request", "message": "state: nested deeper than 32 levels"}
    assert (await client.ok("session:create"))["reused"] is False
