"""The relation endpoints, on the real relation store (memory and SQLite), through the admin
application in process; ``on_relations_changed`` hears of every change, and only of changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from admin import Operations
from store import open_relations

from .conftest import Harness, start_memory


@pytest.fixture(params=["memory", "sqlite"])
async def relations_api(
    request: pytest.FixtureRequest, nursery: trio.Nursery, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """An admin client whose server keeps relations; and the wards it was told changed."""
    harness: Harness = await start_memory(nursery)
    spec = "memory" if request.param == "memory" else f"sqlite:{tmp_path / 'r.db'}"
    changed: list[str] = []
    server = harness.server
    async with open_relations(spec) as relations:
        operations = Operations(
            server.config,
            server.supervisor,
            server.counters,
            server.store,
            relations=relations,
            on_relations_changed=changed.append,
        )
        transport = httpx.ASGITransport(app=operations.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            yield client, changed


async def test_add_list_and_remove(relations_api: tuple[httpx.AsyncClient, list[str]]) -> None:
    api, changed = relations_api
    pair = {"ward": "u_kid", "guardian": "u_mum"}
    added = await api.post("/api/v1/relations", json=pair)
    assert added.status_code == 201 and added.json() == {**pair, "created": True}
    again = await api.post("/api/v1/relations", json=pair)
    assert again.status_code == 200 and again.json() == {**pair, "created": False}
    await api.post("/api/v1/relations", json={"ward": "u_kid", "guardian": "u_dad"})
    await api.post("/api/v1/relations", json={"ward": "u_other", "guardian": "u_mum"})
    assert changed == ["u_kid", "u_kid", "u_other"]

    listed = (await api.get("/api/v1/relations", params={"ward": "u_kid"})).json()["relations"]
    assert [(r["ward"], r["guardian"]) for r in listed] == [("u_kid", "u_dad"), ("u_kid", "u_mum")]
    assert all(r["created_at"].startswith("20") for r in listed)
    everything = (await api.get("/api/v1/relations")).json()["relations"]
    assert len(everything) == 3

    by_body = await api.request("DELETE", "/api/v1/relations", json=pair)
    assert by_body.status_code == 200 and by_body.json() == {**pair, "removed": True}
    other = {"ward": "u_kid", "guardian": "u_dad"}
    assert (await api.request("DELETE", "/api/v1/relations", json=other)).status_code == 200
    gone = await api.request("DELETE", "/api/v1/relations", json=pair)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert changed == ["u_kid", "u_kid", "u_other", "u_kid", "u_kid"]
    assert (await api.get("/api/v1/relations", params={"ward": "u_kid"})).json() == {
        "relations": []
    }


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("POST", {"json": {"ward": "", "guardian": "u_b"}}),
        ("POST", {"json": {"ward": "u_a"}}),
        ("DELETE", {}),  # no body
        ("DELETE", {"params": {"ward": "u_a", "guardian": "u_b"}}),  # the query is not read
        ("GET", {"params": {"ward": ""}}),
    ],
)
async def test_bad_relations_are_400(
    relations_api: tuple[httpx.AsyncClient, list[str]], method: str, kwargs: dict[str, Any]
) -> None:
    api, changed = relations_api
    response = await api.request(method, "/api/v1/relations", **kwargs)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"
    assert changed == []


async def test_a_ward_is_not_its_own_guardian(
    relations_api: tuple[httpx.AsyncClient, list[str]],
) -> None:
    api, changed = relations_api
    response = await api.post("/api/v1/relations", json={"ward": "u_a", "guardian": "u_a"})
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "conflict"
    assert changed == []
