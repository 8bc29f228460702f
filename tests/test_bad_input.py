"""Bad input gets a documented error; the connection, its session and everyone else go on."""

from __future__ import annotations

import trio
import trio_websocket

from .conftest import start_memory


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


async def test_too_large_frame_is_refused_and_closed_with_1009(tcp) -> None:
    host, (student,), _code = await tcp.session(1)
    await student.ws.send_message('{"type": "ping", "pad": "' + "x" * 70_000 + '"}')
    reply = await student.receive()
    assert reply["ok"] is False and reply["error"]["code"] == "too_large"
    assert await student.closed() == 1009
    away = await host.event("session:participantAway")
    assert away["participant_id"] == student.seat["participant_id"]
    assert await host.ok("ping") == {}


async def test_huge_frame_is_cut_off_unread(tcp) -> None:
    client = await tcp.client()
    try:  # refused from its header: the close may arrive before the payload is all sent
        await client.ws.send_message("x" * 300_000)
    except trio_websocket.ConnectionClosed as closed:
        assert closed.reason.code == 1009
    else:
        assert await client.closed() == 1009


async def test_rate_limit(nursery, autojump_clock) -> None:
    harness = await start_memory(nursery, rate_limit=1, rate_burst=3)
    client = await harness.client()
    for ref in range(5):  # at once: the burst of 3 passes, then the rate applies
        await client.send({"type": "ping", "ref": ref})
    replies = [await client.receive() for _ in range(5)]
    assert [r["ok"] for r in replies] == [True, True, True, False, False]
    assert replies[3]["error"] == {"code": "rate_limited", "message": "too many requests"}
    await trio.sleep(1.0)
    assert await client.ok("ping") == {}
    assert harness.server.counters.rate_limited == 2
