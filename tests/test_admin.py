"""The admin API end to end: a real server, a real HTTP client (httpx) on its loopback admin port,
and real WebSocket clients in the sessions it inspects and closes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from actors import Config
from admin import MAX_BODY, AdminConfigError
from gateway import is_loopback
from server import parse_args, serve

from .conftest import ROOT, TCP_GUARD, Harness, RawClient, start_memory, start_tcp

TOKEN = "admin-test-token"
HOUR = 3600.0
DAY = 24 * HOUR


def admin_client(harness: Harness, token: str | None = TOKEN) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    base = f"http://127.0.0.1:{harness.server.admin_port}"
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=TCP_GUARD)


@pytest.fixture
async def harness(nursery: trio.Nursery) -> Harness:
    return await start_tcp(nursery, admin_token=TOKEN)


@pytest.fixture
async def api(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_client(harness) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> str:
    """The error code of an error response, checking its status and shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


async def hibernate(host: RawClient, participant: RawClient) -> None:
    """Drop the host; returns once the participant heard the session hibernate."""
    await host.drop()
    await participant.event("session:hibernating")


# ---------------------------------------------------------------- listing and details


async def test_list_shows_each_live_session(harness: Harness, api: httpx.AsyncClient) -> None:
    host, _, code = await harness.session(participants=2)
    await host.ok("session:createRoom", room="poll", kind="poll")
    response = await api.get("/api/v1/sessions")
    assert response.status_code == 200
    listing = response.json()
    assert listing["next_cursor"] is None and listing["timed_out"] == []
    [session] = listing["sessions"]
    created_at, last_activity = session.pop("created_at"), session.pop("last_activity")
    assert created_at <= last_activity
    assert session == {
        "code": code,
        "kind": "session",
        "status": "active",
        "host_user_id": host.hello["user_id"],
        "active_clients": 3,
        "participants": 3,
        "rooms": ["poll"],
        "meta": None,
    }


async def test_list_filters_by_status_and_host(harness: Harness, api: httpx.AsyncClient) -> None:
    _, _, active = await harness.session(participants=1)
    host, (participant,), hibernating = await harness.session(participants=1)
    await hibernate(host, participant)

    async def codes(**params: Any) -> list[str]:
        response = await api.get("/api/v1/sessions", params=params)
        assert response.status_code == 200, response.text
        return [s["code"] for s in response.json()["sessions"]]

    assert await codes(status="hibernating") == [hibernating]
    assert await codes(status="active") == [active]
    assert await codes(host=host.hello["user_id"]) == [hibernating]
    assert await codes(host="u_nobody") == []
    assert sorted(await codes()) == sorted([active, hibernating])


async def test_list_pages_by_cursor_and_offset(harness: Harness, api: httpx.AsyncClient) -> None:
    codes = sorted([(await harness.session(participants=0))[2] for _ in range(3)])
    first = (await api.get("/api/v1/sessions", params={"limit": 2})).json()
    assert [s["code"] for s in first["sessions"]] == codes[:2]
    assert first["next_cursor"] == codes[1]
    second = (
        await api.get("/api/v1/sessions", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [s["code"] for s in second["sessions"]] == codes[2:]
    assert second["next_cursor"] is None
    skipped = (await api.get("/api/v1/sessions", params={"offset": 1})).json()
    assert [s["code"] for s in skipped["sessions"]] == codes[1:]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"offset": -1}, {"status": "closed"}],
)
async def test_bad_query_parameters_are_400(api: httpx.AsyncClient, params: dict) -> None:
    assert error_of(await api.get("/api/v1/sessions", params=params), 400) == "bad_request"


async def test_detail_of_a_live_session(harness: Harness, api: httpx.AsyncClient) -> None:
    host, (participant,), code = await harness.session(participants=1)
    await host.ok("state:set", state={"question": 1})
    await participant.drop()
    await host.event("state:updated")
    await host.event("session:participantAway")
    response = await api.get(f"/api/v1/sessions/{code}")
    assert response.status_code == 200
    detail = response.json()
    assert detail["code"] == code and detail["status"] == "active"
    assert detail["state_version"] == 1 and detail["state_size"] == len('{"question":1}')
    assert detail["seq"] == host.last_seq and isinstance(detail["epoch"], str)
    assert detail["active_clients"] == 1 and detail["participants"] == 2
    seats = {seat["name"]: seat for seat in detail["seats"]}
    assert seats["host"]["role"] == "host" and seats["host"]["presence"] == "online"
    assert seats["p0"]["presence"] == "away"
    assert seats["p0"]["last_seen"] <= seats["host"]["last_seen"]
    assert sorted(detail["user_ids"]) == sorted(
        [host.hello["user_id"], participant.hello["user_id"]]
    )


async def test_unknown_session_is_404(api: httpx.AsyncClient) -> None:
    assert error_of(await api.get("/api/v1/sessions/NOPE2"), 404) == "not_found"
    assert error_of(await api.delete("/api/v1/sessions/NOPE2"), 404) == "not_found"


async def test_a_closed_session_comes_from_the_history(nursery: trio.Nursery, tmp_path) -> None:
    harness = await start_tcp(nursery, admin_token=TOKEN, store=f"sqlite:{tmp_path / 's.db'}")
    host, _, code = await harness.session(participants=1)
    await host.ok("session:close")
    await harness.server.store.commit()
    async with admin_client(harness) as api:
        response = await api.get(f"/api/v1/sessions/{code}")
    assert response.status_code == 200
    closed = response.json()
    assert closed["code"] == code and closed["status"] == "closed"
    assert closed["reason"] == "manual_stop" and closed["peak_participants"] == 2
    assert closed["host_user_id"] == host.hello["user_id"]
    assert closed["started_at"] <= closed["ended_at"]


async def test_user_sessions_are_those_hosted_or_joined(
    harness: Harness, api: httpx.AsyncClient
) -> None:
    alice = await harness.client("alice", token="alice-secret")
    bob = await harness.client("bob", token="bob-secret")
    hosted = (await alice.ok("session:create"))["code"]
    joined = (await bob.ok("session:create"))["code"]
    alice_again = await harness.client("alice", token="alice-secret")
    await alice_again.ok("session:join", code=joined)

    async def sessions_of(user: str) -> list[str]:
        response = await api.get(f"/api/v1/users/{user}/sessions")
        assert response.status_code == 200
        body = response.json()
        assert body["user_id"] == user and body["timed_out"] == []
        return sorted(s["code"] for s in body["sessions"])

    assert await sessions_of(alice.hello["user_id"]) == sorted([hosted, joined])
    assert await sessions_of(bob.hello["user_id"]) == [joined]
    assert await sessions_of("u_nobody") == []


async def test_history_pages_newest_first(nursery: trio.Nursery, tmp_path) -> None:
    harness = await start_tcp(nursery, admin_token=TOKEN, store=f"sqlite:{tmp_path / 's.db'}")
    codes = []
    for _ in range(3):
        host, _, code = await harness.session(participants=0)
        await host.ok("session:close")
        await harness.server.store.commit()
        codes.append(code)
    async with admin_client(harness) as api:
        first = (await api.get("/api/v1/history", params={"limit": 2})).json()
        assert [s["code"] for s in first["sessions"]] == codes[:0:-1]
        assert all(
            s["status"] == "closed" and s["reason"] == "manual_stop" for s in first["sessions"]
        )
        assert first["retention_seconds"] == harness.server.config.history_retention
        rest = (await api.get("/api/v1/history", params={"cursor": first["next_cursor"]})).json()
        assert [s["code"] for s in rest["sessions"]] == codes[:1]
        assert rest["next_cursor"] is None
        bad = await api.get("/api/v1/history", params={"cursor": "yesterday"})
        assert error_of(bad, 400) == "bad_request"


# ---------------------------------------------------------------- closing


async def test_delete_closes_the_session_and_tells_its_clients(
    harness: Harness, api: httpx.AsyncClient
) -> None:
    host, (participant,), code = await harness.session(participants=1)
    response = await api.delete(f"/api/v1/sessions/{code}")
    assert response.status_code == 200
    assert response.json() == {"code": code, "reason": "admin"}
    for client in (host, participant):
        assert (await client.event("session:closed"))["reason"] == "admin"
    assert harness.supervisor.lookup(code) is None
    assert (await api.get("/api/v1/sessions")).json()["sessions"] == []
    assert error_of(await api.delete(f"/api/v1/sessions/{code}"), 404) == "not_found"


@pytest.mark.parametrize("body", [None, {}, {"confirm": False}])
async def test_reset_without_confirmation_is_409(
    harness: Harness, api: httpx.AsyncClient, body: dict | None
) -> None:
    _, _, code = await harness.session(participants=0)
    response = await api.post("/api/v1/sessions/reset", json=body)
    assert error_of(response, 409) == "confirmation_required"
    assert harness.supervisor.lookup(code) is not None


async def test_reset_closes_every_session_and_tells_the_clients(
    harness: Harness, api: httpx.AsyncClient
) -> None:
    first_host, (first_participant,), first = await harness.session(participants=1)
    second_host, _, second = await harness.session(participants=0)
    response = await api.post("/api/v1/sessions/reset", json={"confirm": True})
    assert response.status_code == 200
    assert response.json() == {"closed_sessions": sorted([first, second]), "count": 2}
    for client in (first_host, first_participant, second_host):
        assert (await client.event("session:closed"))["reason"] == "admin_reset"
    assert harness.supervisor.codes() == []


@pytest.mark.parametrize(
    "body",
    [{}, {"max_inactive_hours": "24"}, {"max_inactive_hours": -1}, {"max_inactive_hours": True}],
)
async def test_cleanup_refuses_a_bad_body(api: httpx.AsyncClient, body: dict) -> None:
    response = await api.post("/api/v1/sessions/cleanup", json=body)
    assert error_of(response, 400) == "bad_request"
    assert "max_inactive_hours" in response.json()["error"]["message"]


async def test_cleanup_closes_exactly_the_sessions_idle_past_the_threshold(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """On virtual time that only moves when the test says so (or when everything has been
    stuck for a real second: a hang then reaches the guards), with real HTTP to the admin
    port. Timers that would end the sessions by themselves are pushed out of the way."""
    mock_clock.autojump_threshold = 1.0  # seconds of real time
    far = 30 * DAY
    harness = await start_memory(
        nursery,
        admin_token=TOKEN,
        host_grace=far,
        participant_grace=far,
        idle_timeout=far,
        heartbeat_interval=far,
    )
    with trio.fail_after(far):  # the hang guard, beyond the 25 hours the test jumps
        connected_host, _, connected = await harness.session(participants=0)
        old_host, _, old = await harness.session(participants=0)
        shared_host, (shared_participant,), shared = await harness.session(participants=1)
        await old_host.drop()
        await hibernate(shared_host, shared_participant)  # a participant is still connected
        mock_clock.jump(20 * HOUR)
        recent_host, _, recent = await harness.session(participants=0)
        await recent_host.drop()
        mock_clock.jump(5 * HOUR)  # old: idle 25 h; recent: 5 h
        await trio.testing.wait_all_tasks_blocked()
        async with admin_client(harness) as api:
            response = await api.post("/api/v1/sessions/cleanup", json={"max_inactive_hours": 24})
            assert response.status_code == 200
            assert response.json() == {"removed_sessions": [old], "count": 1}
            assert sorted(harness.supervisor.codes()) == sorted([connected, shared, recent])
            response = await api.post("/api/v1/sessions/cleanup", json={"max_inactive_hours": 4})
            assert response.json() == {"removed_sessions": [recent], "count": 1}
        assert sorted(harness.supervisor.codes()) == sorted([connected, shared])
        assert connected_host.events == [] and shared_participant.events == []


# ---------------------------------------------------------------- the token


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer"])
async def test_a_missing_or_wrong_token_is_401(harness: Harness, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization else {}
    async with admin_client(harness, token=None) as api:
        for method, path in [
            ("GET", "/api/v1/sessions"),
            ("POST", "/api/v1/sessions/reset"),
            ("DELETE", "/api/v1/sessions/ABCDE"),
            ("GET", "/metrics"),
        ]:
            response = await api.request(method, path, headers=headers)
            assert error_of(response, 401) == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"


async def test_health_and_the_document_need_no_token(harness: Harness) -> None:
    async with admin_client(harness, token=None) as api:
        assert (await api.get("/healthz")).json() == {"ok": True}
        assert (await api.get("/readyz")).json() == {"ready": True, "reasons": []}
        assert (await api.get("/api/v1/openapi.json")).json()["openapi"].startswith("3.")


async def test_without_a_configured_token_loopback_is_open(nursery: trio.Nursery) -> None:
    harness = await start_tcp(nursery)
    async with admin_client(harness, token=None) as api:
        assert (await api.get("/api/v1/sessions")).status_code == 200


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "", "10.1.2.3", "admin.example.com"]))


def test_the_command_line_refuses_a_public_admin_address_without_a_token(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--admin-host", "0.0.0.0"], env={})
    assert exit_.value.code == 2
    assert "needs a token: set --admin-token" in capsys.readouterr().err
    config, _ = parse_args(["--admin-host", "0.0.0.0"], env={"TRIO_SESSIONS_ADMIN_TOKEN": "s"})
    assert config.admin_token == "s"
    config, _ = parse_args(["--admin-host", "0.0.0.0", "--admin-port", "-1"], env={})
    assert config.admin_port == -1


def test_the_server_exits_2_on_a_public_admin_address_without_a_token() -> None:
    command = [sys.executable, "server.py", "--store", "memory", "--admin-host", "0.0.0.0"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "the admin API on 0.0.0.0 (not a loopback address) needs a token" in done.stderr
    assert "listening" not in done.stderr


async def test_serve_refuses_a_public_admin_address_without_a_token() -> None:
    config = Config(port=0, admin_host="0.0.0.0", admin_port=0)
    with pytest.raises(AdminConfigError, match=r"^the admin API on 0\.0\.0\.0 .* needs a token"):
        await serve(config)


async def test_admin_port_minus_one_turns_the_listener_off(nursery: trio.Nursery) -> None:
    harness = await start_tcp(nursery, admin_port=-1)
    assert harness.server.admin_port is None
    assert harness.server.port is not None


# ---------------------------------------------------------------- HTTP edges


async def test_unknown_paths_wrong_methods_and_bad_bodies(api: httpx.AsyncClient) -> None:
    assert error_of(await api.get("/api/v1/nope"), 404) == "not_found"
    response = await api.put("/api/v1/sessions")
    assert error_of(response, 405) == "method_not_allowed"
    assert response.headers["allow"] == "GET"
    bad_json = await api.post("/api/v1/sessions/cleanup", content=b"{not json")
    assert error_of(bad_json, 400) == "bad_request"
    not_object = await api.post("/api/v1/sessions/cleanup", json=[24])
    assert error_of(not_object, 400) == "bad_request"
    huge = await api.post("/api/v1/sessions/cleanup", content=b" " * (MAX_BODY + 1))
    assert error_of(huge, 413) == "too_large"


async def test_health_and_readiness_on_both_ports(harness: Harness) -> None:
    ports = [harness.server.admin_port, harness.server.port]
    async with httpx.AsyncClient(timeout=TCP_GUARD) as http:
        for port in ports:
            alive = await http.get(f"http://127.0.0.1:{port}/healthz")
            assert alive.status_code == 200 and alive.json() == {"ok": True}
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status_code == 200 and ready.json() == {"ready": True, "reasons": []}


async def test_draining_makes_readyz_503_and_the_api_unavailable(
    harness: Harness, api: httpx.AsyncClient
) -> None:
    harness.server.readiness.draining = True
    async with httpx.AsyncClient(timeout=TCP_GUARD) as http:
        for port in (harness.server.admin_port, harness.server.port):
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"ready": False, "reasons": ["draining"]}
    assert error_of(await api.get("/api/v1/sessions"), 503) == "shutting_down"
    assert (await api.get("/healthz")).status_code == 200


async def test_shutdown_marks_the_server_draining(nursery: trio.Nursery) -> None:
    harness = await start_tcp(nursery)
    assert not harness.server.readiness.draining
    harness.server.shutdown()
    assert harness.server.readiness.draining
