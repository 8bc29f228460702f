"""Live sessions: a ward goes live and only its accepted guardians watch, seated by the server.

Runs on the in-memory listener under the virtual clock, so grace periods and durations are
exact. Relations are in the server's own relation store (``Server.relations``), as an operator
would add them with ``trio-sessions relations add``.
"""

from __future__ import annotations

import pytest
import trio

from .conftest import Harness, RawClient, start_memory, start_tcp
from .test_admin import TOKEN, admin_client
from .test_security import AUTH, token

LIVE_GRACE = 30.0


@pytest.fixture
async def live(nursery) -> Harness:
    harness = await start_memory(nursery, **AUTH, live_grace=LIVE_GRACE)
    relations = harness.server.relations
    for ward, guardian in [("ward", "mum"), ("ward", "dad"), ("ward-2", "mum")]:
        assert await relations.add(ward, guardian)
    return harness


async def connect(harness: Harness, user: str) -> RawClient:
    return await harness.client(user, token=token(user))


async def test_guardians_are_seated_before_and_after_the_start(live, autojump_clock) -> None:
    mum = await connect(live, "mum")
    ward = await connect(live, "ward")
    started = await ward.ok("live:start", state={"lesson": "maths"})
    assert started["kind"] == "live" and started["role"] == "host"
    assert sorted(started["guardians"]) == ["dad", "mum"]
    assert started["connected_guardians"] == ["mum"]
    notice = await ward.event("live:started")
    assert notice == {
        "type": "live:started",
        "session": started["code"],
        "guardians": started["guardians"],
        "connected_guardians": ["mum"],
    }
    seated = await mum.event("guardian:liveStarted")
    assert seated["ward_id"] == "ward" and seated["session"] == started["code"]
    assert seated["role"] == "guardian" and seated["resume_token"]
    assert seated["state"] == {"lesson": "maths"} and seated["started_at"]

    dad = await connect(live, "dad")  # connects while the ward is live
    late = await dad.event("guardian:liveStarted")
    assert late["session"] == started["code"]
    for watcher in (ward, mum):  # the others are told
        joined = await watcher.event("session:participantJoined")
        assert joined["participant"]["id"] == late["participant_id"]
        assert joined["participant"]["role"] == "guardian"

    # both watch what the ward publishes
    await ward.ok("state:patch", patch={"page": 2})
    for guardian in (mum, dad):
        update = await guardian.event("state:updated")
        assert update["patch"] == {"page": 2}
    # and a guardian may not write
    assert (await dad.error("state:patch", patch={"page": 3}))["code"] == "forbidden"


async def test_one_connection_watches_two_wards(live, autojump_clock) -> None:
    mum = await connect(live, "mum")
    ward = await connect(live, "ward")
    ward_2 = await connect(live, "ward-2")
    first = await ward.ok("live:start")
    second = await ward_2.ok("live:start")
    seats = {(await mum.event("guardian:liveStarted"))["session"] for _ in range(2)}
    assert seats == {first["code"], second["code"]}
    await ward_2.ok("state:patch", patch={"from": "ward-2"})
    update = await mum.event("state:updated")
    assert update["session"] == second["code"]


async def test_nobody_else_gets_in(live, autojump_clock) -> None:
    ward = await connect(live, "ward")
    started = await ward.ok("live:start")
    stranger = await connect(live, "stranger")
    error = await stranger.error("session:join", code=started["code"])
    assert error["code"] == "forbidden"
    assert (await ward.error("live:start"))["code"] == "already_live"
    await ward.ok("state:patch", patch={"alone": True})
    assert [e["type"] for e in stranger.events] == []


async def test_live_stop_ends_it_for_everyone_with_its_duration(live, autojump_clock) -> None:
    mum = await connect(live, "mum")
    ward = await connect(live, "ward")
    await ward.ok("live:start")
    await ward.event("live:started")
    await mum.event("guardian:liveStarted")
    await trio.sleep(90)
    await ward.ok("live:stop")
    for client in (ward, mum):
        closed = await client.event("session:closed")
        assert closed["reason"] == "manual_stop"
        assert closed["duration_s"] == pytest.approx(90, abs=0.5)
        assert closed["started_at"] and closed["ended_at"]


async def test_a_ward_that_vanishes_ends_it_after_the_grace(live, autojump_clock) -> None:
    mum = await connect(live, "mum")
    ward = await connect(live, "ward")
    await ward.ok("live:start")
    await mum.event("guardian:liveStarted")
    await trio.sleep(10)
    await ward.drop()
    hibernating = await mum.event("session:hibernating")
    assert hibernating["grace_s"] == LIVE_GRACE
    closed = await mum.event("session:closed")
    assert closed["reason"] == "ward_disconnected"
    assert closed["duration_s"] == pytest.approx(10 + LIVE_GRACE, abs=0.5)


async def test_a_ward_that_comes_back_in_time_keeps_it(live, autojump_clock) -> None:
    mum = await connect(live, "mum")
    ward = await connect(live, "ward")
    started = await ward.ok("live:start")
    await mum.event("guardian:liveStarted")
    await ward.drop()
    await mum.event("session:hibernating")
    await trio.sleep(LIVE_GRACE / 2)
    back, reply = await live.resume(started, started["seq"], token=token("ward"))
    assert reply["code"] == started["code"]
    await mum.event("session:resumed")
    await back.ok("live:stop")
    assert (await mum.event("session:closed"))["reason"] == "manual_stop"


async def test_relations_changed_through_the_admin_api_apply_to_a_live_session(
    nursery,
) -> None:
    harness = await start_tcp(nursery, **AUTH, admin_token=TOKEN)
    ward = await connect(harness, "ward")
    gran = await connect(harness, "gran")
    started = await ward.ok("live:start")
    assert started["guardians"] == []
    await ward.event("live:started")
    async with admin_client(harness) as api:
        added = await api.post("/api/v1/relations", json={"ward": "ward", "guardian": "gran"})
        assert added.status_code == 201
        seated = await gran.event("guardian:liveStarted")  # connected: seated at once
        assert seated["session"] == started["code"]
        joined = await ward.event("session:participantJoined")
        assert joined["participant"]["id"] == seated["participant_id"]

        removed = await api.request(
            "DELETE", "/api/v1/relations", json={"ward": "ward", "guardian": "gran"}
        )
        assert removed.status_code == 200
        left = await ward.event("session:participantLeft")
        assert left == {**left, "participant_id": seated["participant_id"], "reason": "removed"}
        ended = await gran.event("seat:ended")
        assert ended == {"type": "seat:ended", "session": started["code"], "reason": "removed"}
    await ward.ok("state:patch", patch={"private": True})
    assert await gran.ok("ping") == {}
    assert gran.events == []  # nothing of the session reaches a removed guardian


async def test_a_user_notice_reaches_every_connection_of_the_user(nursery) -> None:
    harness = await start_tcp(nursery, **AUTH, admin_token=TOKEN)
    tabs = [await connect(harness, "pupil") for _ in range(2)]
    other = await connect(harness, "someone-else")
    async with admin_client(harness) as api:
        sent = await api.post(
            "/api/v1/users/pupil/notify", json={"topic": "invited", "data": {"code": "ABC234"}}
        )
    assert sent.json()["delivered"] == 2
    for tab in tabs:
        notice = await tab.event("user:notice")
        assert notice["topic"] == "invited" and notice["data"] == {"code": "ABC234"}
    assert await other.ok("ping") == {}
    assert other.events == []


async def test_a_guardian_that_lost_its_token_is_seated_again_after_the_grace(
    live, autojump_clock
) -> None:
    mum = await connect(live, "mum")
    ward = await connect(live, "ward")
    started = await ward.ok("live:start")
    await ward.event("live:started")
    first = await mum.event("guardian:liveStarted")
    await mum.drop()
    await ward.event("session:participantAway")
    again = await connect(live, "mum")  # a new page that does not have the token
    await ward.ok("state:patch", patch={"while": "away"})
    assert await again.ok("ping") == {}  # anything sent to it before would come first
    assert again.events == []  # the old seat waits for its resume, for participant_grace
    second = await again.event("guardian:liveStarted")  # the grace ran out: seated afresh
    assert second["session"] == started["code"]
    assert second["participant_id"] != first["participant_id"]
    assert second["state"] == {"while": "away"}
