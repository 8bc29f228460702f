"""Reconnection without loss: grace periods, hibernation, resume, replay, state. Virtual clock."""

from __future__ import annotations

import pytest
import trio

from .conftest import start_memory


def stats(harness, code):
    return next(s for s in harness.supervisor.statistics().sessions if s.code == code)


async def test_host_comes_back_within_the_grace(memory, autojump_clock) -> None:
    host, (a, b), code = await memory.session(2)
    await host.ok("session:createRoom", room="poll", kind="poll")
    await host.ok("state:set", state={"question": "2+2?", "votes": {}})
    await host.ok("state:patch", patch={"votes": {"a": 4}})
    for client in (host, a, b):
        await client.event("session:roomCreated")
        await client.event("state:updated")
        await client.event("state:updated")
    await host.drop()
    for client in (a, b):
        hibernating = await client.event("session:hibernating")
        assert hibernating["grace_s"] == 600
    await trio.sleep(9 * 60)
    back, reply = await memory.resume(host.seat, host.last_seq)
    assert reply["participant_id"] == host.seat["participant_id"] and reply["role"] == "host"
    assert reply["recovered"] is True and reply["replayed"] == 1  # its own hibernating event
    assert reply["state"] == {"question": "2+2?", "votes": {"a": 4}} and reply["version"] == 2
    assert reply["status"] == "active"
    assert (await back.event("session:hibernating"))["seq"] == host.last_seq + 1
    for client in (a, b):
        await client.event("session:resumed")
    # rooms and participants are intact: what a newcomer sees
    newcomer = await memory.client()
    joined = await newcomer.ok("session:join", code=code)
    assert [r["name"] for r in joined["rooms"]] == ["poll"]
    assert {p["id"]: p["presence"] for p in joined["participants"]} == {
        host.seat["participant_id"]: "online",
        a.seat["participant_id"]: "online",
        b.seat["participant_id"]: "online",
        joined["participant_id"]: "online",
    }
    await a.event("session:participantJoined")
    await back.ok("room:message", room="poll", data="welcome back")
    assert (await a.event("room:message"))["data"] == "welcome back"


async def test_host_that_never_returns_closes_the_session_at_the_deadline(
    memory, autojump_clock
) -> None:
    host, (a,), code = await memory.session(1)
    handle = memory.supervisor.lookup(code)
    await host.drop()
    dropped_at = trio.current_time()
    await a.event("session:hibernating")
    closed = await a.event("session:closed")
    assert closed["reason"] == "host_timeout"
    assert trio.current_time() - dropped_at == pytest.approx(600, abs=0.01)
    await handle.finished.wait()
    assert memory.supervisor.codes() == []
    # a late resume gets a clear answer, not a new session
    late = await memory.client()
    error = await late.error("session:resume", token=host.seat["resume_token"])
    assert error["code"] == "session_closed"


async def test_participant_grace(memory, autojump_clock) -> None:
    host, (a, b), _code = await memory.session(2)
    await a.drop()
    away = await host.event("session:participantAway")
    assert away["participant_id"] == a.seat["participant_id"]
    await trio.sleep(59)
    a2, reply = await memory.resume(a.seat, a.last_seq)
    assert reply["participant_id"] == a.seat["participant_id"] and reply["recovered"] is True
    assert reply["replayed"] == 1 and (await a2.event("session:participantAway"))["seq"] == 3
    back = await host.event("session:participantBack")
    assert back["participant_id"] == a.seat["participant_id"]

    await b.drop()
    dropped_at = trio.current_time()
    await host.event("session:participantAway")
    left = await host.event("session:participantLeft")
    assert left == {**left, "participant_id": b.seat["participant_id"], "reason": "timeout"}
    assert trio.current_time() - dropped_at == pytest.approx(60, abs=0.01)
    assert (await a2.event("session:participantAway"))["participant_id"] == b.seat["participant_id"]
    await a2.event("session:participantLeft")
    late = await memory.client()
    assert (await late.error("session:resume", token=b.seat["resume_token"]))[
        "code"
    ] == "unauthorized"


async def test_explicit_leave_skips_the_grace(memory, autojump_clock) -> None:
    host, (a,), _code = await memory.session(1)
    await a.ok("session:leave")
    left = await host.event("session:participantLeft")
    assert left["reason"] == "left"
    late = await memory.client()
    assert (await late.error("session:resume", token=a.seat["resume_token"]))[
        "code"
    ] == "unauthorized"


async def missed_while_away(harness, count: int):
    """A participant drops, ``count`` room messages go by, then it resumes."""
    host, (away, witness), _code = await harness.session(2)
    await host.ok("session:createRoom", room="r")
    for client in (host, away, witness):
        await client.event("session:roomCreated")
    last_seq = away.last_seq
    await away.drop()
    await witness.event("session:participantAway")
    for i in range(count):
        await host.ok("room:message", room="r", data=i)
    missed = [await witness.event("room:message") for _ in range(count)]
    back, reply = await harness.resume(away.seat, last_seq)
    return host, witness, back, reply, missed


async def test_missed_events_are_replayed_exactly_then_live_ones_follow(
    nursery, autojump_clock
) -> None:
    harness = await start_memory(nursery, rate_limit=0)
    host, _witness, back, reply, missed = await missed_while_away(harness, 500)
    assert reply["recovered"] is True and reply["replayed"] == 501
    replayed = [await back.event() for _ in range(501)]
    assert replayed[0]["type"] == "session:participantAway"  # the notice of its own absence
    assert replayed[1:] == missed  # the very frames the others got, in order
    assert [e["seq"] for e in replayed] == list(range(replayed[0]["seq"], reply["seq"]))
    await host.ok("room:message", room="r", data="live")
    live = await back.event("room:message")
    assert live["data"] == "live" and live["seq"] == reply["seq"] + 1


async def test_too_many_missed_events_give_a_snapshot(nursery, autojump_clock) -> None:
    harness = await start_memory(nursery, rate_limit=0)
    _host, _witness, back, reply, _missed = await missed_while_away(harness, 5000)
    assert reply["recovered"] is False and reply["replayed"] == 0
    newcomer = await harness.client()
    fresh = await newcomer.ok("session:join", code=reply["code"])
    # what a fresh join sees, less the newcomer itself
    fresh["participants"] = [p for p in fresh["participants"] if p["id"] != fresh["participant_id"]]
    for room in fresh["rooms"]:
        room["members"].remove(fresh["participant_id"])
    fresh["seq"] -= 1
    keys = (
        "code",
        "status",
        "host_id",
        "participants",
        "rooms",
        "state",
        "version",
        "seq",
        "epoch",
    )
    assert {k: reply[k] for k in keys} == {k: fresh[k] for k in keys}
    # and nothing was replayed: the next frame is the newcomer's arrival
    assert (await back.event())["type"] == "session:participantJoined"


async def test_resume_from_another_epoch_or_unknown_seq_gives_a_snapshot(
    memory, autojump_clock
) -> None:
    _host, (a,), _code = await memory.session(1)
    await a.drop()
    seat = {**a.seat, "epoch": "some-other-epoch"}
    a2, reply = await memory.resume(seat, a.last_seq)
    assert reply["recovered"] is False and "participants" in reply
    _a3, reply = await memory.resume(a.seat, 10_000)  # a seq from the future
    assert reply["recovered"] is False
    assert await a2.closed() == 4002


async def test_a_bad_token_changes_nothing(memory, autojump_clock) -> None:
    host, (a,), code = await memory.session(1)
    await a.drop()
    dropped_at = trio.current_time()
    await host.event("session:participantAway")
    attacker = await memory.client()
    pid = a.seat["participant_id"]
    for token in (f"{code}.{pid}.wrong-secret", f"{code}.{pid}", "garbage", f"{code}.p_nope.x"):
        error = await attacker.error("session:resume", token=token, last_seq=0)
        assert error == {"code": "unauthorized", "message": "invalid or expired resume token"}
    # the one other answer: a well-formed token of a session that has ended
    error = await attacker.error("session:resume", token=f"ZZZZZ.{pid}.secret", last_seq=0)
    assert error["code"] == "session_closed"
    await trio.sleep(30)
    assert stats(memory, code).connected == 1
    # the grace timer was not touched: the seat goes exactly on time
    left = await host.event("session:participantLeft")
    assert left["participant_id"] == pid and left["reason"] == "timeout"
    assert trio.current_time() - dropped_at == pytest.approx(60, abs=0.01)


async def test_the_newer_connection_wins_without_a_disconnect(memory, autojump_clock) -> None:
    host, (a,), code = await memory.session(1)
    _a2, reply = await memory.resume(a.seat, a.last_seq)
    assert reply["replayed"] == 0
    assert await a.closed() == 4002
    await host.ok("ping")
    assert host.events == []  # no away, no back: a replaced link is not a disconnect
    assert stats(memory, code).connected == 2


async def test_concurrent_resumes_with_one_token_leave_one_seat(memory, autojump_clock) -> None:
    host, (a,), code = await memory.session(1)
    await a.drop()
    await host.event("session:participantAway")
    c1, c2 = await memory.client(), await memory.client()
    for client in (c1, c2):
        await client.send({"type": "session:resume", "ref": "x", "token": a.seat["resume_token"]})
    replies = [await c1.receive(), await c2.receive()]
    assert all(r["ok"] and r["data"]["participant_id"] == a.seat["participant_id"] for r in replies)
    assert await c1.closed() == 4002  # the first was replaced by the second
    assert await c2.ok("ping") == {}
    assert stats(memory, code).participants == 2 and stats(memory, code).connected == 2
    await host.event("session:participantBack")
    await host.ok("ping")
    assert host.events == []


async def test_a_hundred_rapid_resumes_converge(memory, autojump_clock) -> None:
    """Tabs that take a seat from each other are damped: a seat taken over less than
    ``seat_replace_interval`` ago is refused with ``seat_busy`` and a retry hint."""
    host, (a,), code = await memory.session(1)
    current, refused, start = a, 0, trio.current_time()
    for _ in range(100):
        newer = await memory.client()
        while True:
            reply = await newer.request(
                "session:resume", token=a.seat["resume_token"], last_seq=0, epoch=a.seat["epoch"]
            )
            if reply["ok"]:
                break
            assert reply["error"]["code"] == "seat_busy", reply
            assert 0 < reply["error"]["retry_after_ms"] <= 1000
            refused += 1
            await trio.sleep(reply["error"]["retry_after_ms"] / 1000)
        assert await current.closed() == 4002
        current = newer
    assert refused == 99  # every takeover but the first came within the interval
    assert trio.current_time() - start == pytest.approx(99.0, abs=0.1)  # one per second
    assert await current.ok("ping") == {}
    assert memory.supervisor.codes() == [code]
    assert stats(memory, code).participants == 2 and stats(memory, code).connected == 2
    await host.ok("ping")
    assert host.events == []


async def test_state_changes(nursery, autojump_clock) -> None:
    harness = await start_memory(nursery, max_state_size=200)
    host, (a,), _code = await harness.session(1)
    assert await host.ok("state:set", state={"round": 1, "scores": {}}) == {"version": 1}
    assert await host.ok("state:patch", patch={"scores": {"ann": 3}}) == {"version": 2}
    for client in (host, a):
        set_event = await client.event("state:updated")
        assert set_event["state"] == {"round": 1, "scores": {}} and "patch" not in set_event
        patch_event = await client.event("state:updated")
        assert patch_event["patch"] == {"scores": {"ann": 3}} and patch_event["version"] == 2
        assert patch_event["by"] == host.seat["participant_id"]
    error = await a.error("state:patch", patch={"round": 9})
    assert error["code"] == "forbidden"
    error = await host.error("state:set", state={"big": "x" * 300})
    assert error["code"] == "too_large" and error["limit"] == 200
    error = await host.error("state:patch", patch={"round": 2}, expected_version=1)
    assert error == {**error, "code": "conflict", "version": 2}
    late = await harness.client()
    joined = await late.ok("session:join", code=_code)
    assert joined["state"] == {"round": 1, "scores": {"ann": 3}} and joined["version"] == 2


async def test_concurrent_patches_one_wins(memory, autojump_clock) -> None:
    host = await memory.client()
    created = await host.ok("session:create", participants_can_write_state=True, state={"n": 0})
    player = await memory.client()
    await player.ok("session:join", code=created["code"])
    await host.event("session:participantJoined")
    for client, value in ((host, 1), (player, 2)):
        await client.send(
            {"type": "state:patch", "ref": "p", "patch": {"n": value}, "expected_version": 0}
        )
    replies = []
    for client in (host, player):
        while (frame := await client.receive())["type"] != "reply":
            assert frame["type"] == "state:updated" and frame["version"] == 1
        replies.append(frame)
    assert sorted(r["ok"] for r in replies) == [False, True]
    loser = next(r for r in replies if not r["ok"])
    assert loser["error"]["code"] == "conflict" and loser["error"]["version"] == 1


async def test_a_host_joining_by_code_from_another_tab_keeps_one_seat(
    memory, autojump_clock
) -> None:
    host = await memory.client(token="teacher-device-token")
    created = await host.ok("session:create")
    tab = await memory.client(token="teacher-device-token")
    joined = await tab.ok("session:join", code=created["code"])
    assert joined["participant_id"] == created["participant_id"] and joined["role"] == "host"
    assert len(joined["participants"]) == 1
    assert await host.closed() == 4002
    await tab.ok("session:createRoom", room="still-host")
