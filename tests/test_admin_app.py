"""The admin API's ASGI application driven in process (httpx's ASGI transport, no sockets), for
what needs fakes: a session that never answers (on the autojump clock), the optional hooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from actors import Config, Message, SessionHandle
from admin import ANSWER_TIMEOUT, CLOSE_TIMEOUT, AdminApi, AdminApp, Operations, Readiness
from store import MemoryStore

from .conftest import Harness, start_memory


class StuckSupervisor:
    """A supervisor whose one session never reads its inbox (a wedged actor)."""

    def __init__(self) -> None:
        send, self.inbox = trio.open_memory_channel[Message](16)
        self.handle = SessionHandle("STUCK", "u_host", send)

    def handles(self) -> list[SessionHandle]:
        return [self.handle]

    def lookup(self, code: str) -> SessionHandle | None:
        return self.handle if code == "STUCK" else None


def in_process(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin")


@pytest.fixture
async def stuck() -> AsyncIterator[httpx.AsyncClient]:
    api = AdminApi(
        config=Config(),
        supervisor=StuckSupervisor(),  # type: ignore[arg-type]
        store=MemoryStore(),
        readiness=Readiness(listening=True),
        metrics=None,
    )
    async with in_process(AdminApp(api)) as client:
        yield client


async def test_a_session_that_never_answers_is_504_after_the_bound(
    stuck: httpx.AsyncClient, autojump_clock: Any
) -> None:
    start = trio.current_time()
    response = await stuck.get("/api/v1/sessions/STUCK")
    assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
    assert trio.current_time() - start == pytest.approx(ANSWER_TIMEOUT)
    start = trio.current_time()
    response = await stuck.delete("/api/v1/sessions/STUCK")
    assert response.status_code == 504
    assert trio.current_time() - start == pytest.approx(CLOSE_TIMEOUT)


async def test_listings_name_the_sessions_that_did_not_answer(
    stuck: httpx.AsyncClient, autojump_clock: Any
) -> None:
    listing = (await stuck.get("/api/v1/sessions")).json()
    assert listing == {"sessions": [], "next_cursor": None, "timed_out": ["STUCK"]}
    mine = (await stuck.get("/api/v1/users/u_host/sessions")).json()
    assert mine == {"user_id": "u_host", "sessions": [], "timed_out": ["STUCK"]}
    cleanup = await stuck.post("/api/v1/sessions/cleanup", json={"max_inactive_hours": 0})
    assert cleanup.json() == {"removed_sessions": [], "count": 0}


@pytest.fixture
async def harness(nursery: trio.Nursery) -> Harness:
    return await start_memory(nursery)


async def test_notify_calls_the_hook_with_the_user_topic_and_data(
    harness: Harness, autojump_clock: Any
) -> None:
    calls = []

    def notify_user(user_id: str, topic: str, data: Any) -> int:
        calls.append((user_id, topic, data))
        return 2

    server = harness.server
    operations = Operations(
        server.config, server.supervisor, server.counters, server.store, notify_user=notify_user
    )
    async with in_process(operations.app) as client:
        body = {"topic": "alert", "data": {"level": 3}}
        response = await client.post("/api/v1/users/u_1/notify", json=body)
        assert response.status_code == 200
        assert response.json() == {"user_id": "u_1", "topic": "alert", "delivered": 2}
        for bad in ({}, {"topic": ""}, {"topic": 7}):
            response = await client.post("/api/v1/users/u_1/notify", json=bad)
            assert response.status_code == 400 and "topic" in response.text
    assert calls == [("u_1", "alert", {"level": 3})]


async def test_without_the_hooks_notify_and_relations_are_501(
    harness: Harness, autojump_clock: Any
) -> None:
    server = harness.server
    operations = Operations(server.config, server.supervisor, server.counters, server.store)
    pair = {"ward": "u_w", "guardian": "u_g"}
    async with in_process(operations.app) as client:
        for method, path, body in [
            ("POST", "/api/v1/users/u_1/notify", {"topic": "t", "data": 1}),
            ("GET", "/api/v1/relations", None),
            ("POST", "/api/v1/relations", pair),
            ("DELETE", "/api/v1/relations", pair),
        ]:
            response = await client.request(method, path, json=body)
            assert response.status_code == 501, (method, path)
            assert response.json()["error"]["code"] == "not_implemented"
