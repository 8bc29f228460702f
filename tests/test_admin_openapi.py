"""The admin API's OpenAPI document: generated from the handlers' own classes, and kept by the
server (a bounded schemathesis run against the served document on a live ``server.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import attrs
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

import admin
from actors import SessionView
from admin import json_schema, openapi_document, operations

from .conftest import ServerProcess, running_server

TOKEN = "schemathesis-token"
MAX_EXAMPLES = 15  # per operation and mode: the whole run takes a few seconds


@attrs.frozen
class Inner:
    """An inner thing."""

    n: int


@attrs.frozen
class Outer:
    """An outer thing."""

    name: str
    inner: Inner
    items: list[Inner]
    maybe: float | None
    kind: Literal["a", "b"]
    extra: dict[str, Any]
    flag: bool = False


def test_attrs_classes_become_json_schema_components() -> None:
    components: dict[str, Any] = {}
    assert json_schema(Outer, components) == {"$ref": "#/components/schemas/Outer"}
    outer = components["Outer"]
    assert outer["description"] == "An outer thing."
    assert outer["required"] == ["name", "inner", "items", "maybe", "kind", "extra"]
    assert outer["properties"] == {
        "name": {"type": "string"},
        "inner": {"$ref": "#/components/schemas/Inner"},
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Inner"}},
        "maybe": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "kind": {"enum": ["a", "b"]},
        "extra": {"type": "object", "additionalProperties": {}},
        "flag": {"type": "boolean"},
    }
    assert components["Inner"]["properties"] == {"n": {"type": "integer"}}


def test_the_document_covers_every_route_with_the_handlers_types() -> None:
    document = openapi_document(operations())
    assert document["openapi"] == "3.1.0"
    routes = {(op.method.lower(), op.path) for op in operations()}
    documented = {(m, path) for path, item in document["paths"].items() for m in item}
    assert documented == routes
    schemas = document["components"]["schemas"]
    assert set(schemas["SessionView"]["properties"]) == {f.name for f in attrs.fields(SessionView)}
    cleanup = document["paths"]["/api/v1/sessions/cleanup"]["post"]
    body = cleanup["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CleanupRequest"}
    hours = schemas["CleanupRequest"]["properties"]["max_inactive_hours"]
    assert hours == {"type": "number", "minimum": 0}
    assert set(cleanup["responses"]) == {"200", "400", "401", "413", "503"}
    assert cleanup["security"] == [{"bearer": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []


@pytest.fixture(scope="module")
def admin_server() -> Iterator[ServerProcess]:
    with running_server("--admin-token", TOKEN) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_server_keeps_its_document(admin_server: ServerProcess, mode: GenerationMode) -> None:
    """Every answer conforms to the served document (statuses, content types, bodies), bad
    input gets a 4xx, and the token is enforced: for generated requests to every operation.
    501 is documented: the command-line server runs without the optional hooks (relations,
    notify), so only that check is left out for it."""
    schema = schemathesis.openapi.from_url(admin_server.admin_url + "/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    served = {f"{op.method} {op.path}": op for op in admin.operations()}
    # schemathesis leaves out the document's own path
    assert {op.label for op in operations} == set(served) - {"GET /api/v1/openapi.json"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for operation in operations:
        served_op = served[operation.label]
        takes_input = served_op.query or served_op.body or served_op.path_parameters()
        if mode is GenerationMode.NEGATIVE and not takes_input:
            continue  # nothing in the request could be invalid

        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def conforms(case: Any) -> None:
            response = case.call(headers=auth, timeout=10)
            excluded = [not_a_server_error] if response.status_code == 501 else []
            case.validate_response(response, headers=auth, excluded_checks=excluded)

        conforms()
