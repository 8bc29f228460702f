"""The OpenAPI 3.1 document of the admin API, generated from its route table and attrs classes.

:func:`json_schema` turns a type (attrs classes, lists, dicts, unions, literals, scalars) into
JSON Schema, registering each attrs class once under ``components/schemas``; a field's
constraints come from its ``schema`` metadata (see ``_schemas.py``). Nothing here is written by
hand per endpoint: a new route or field shows in the document by itself.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, Union, get_args, get_origin

import attrs

from ._schemas import SCHEMA, ErrorBody

if TYPE_CHECKING:
    from ._routes import Operation

OPENAPI_VERSION: Final = "3.1.0"
API_VERSION: Final = "1"
_SCALARS: Final[dict[object, dict[str, Any]]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    Any: {},
}
ERROR_MEANINGS: Final = {
    400: "A query parameter is unknown or does not fit, or the body does not (the message says)",
    401: "No bearer token, or the wrong one",
    404: "No such session, user, relation or path",
    405: "The path does not take this method",
    409: "Reset without confirmation",
    413: "The body is over the limit",
    501: "This server was started without that feature",
    503: "The server is shutting down, or its store cannot be read or written",
    504: "A session did not answer in time",
}


def json_schema(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of ``tp``; attrs classes go to ``components`` and are referenced."""
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        return {"anyOf": [json_schema(arg, components) for arg in args]}
    if origin is list:
        return {"type": "array", "items": json_schema(args[0], components)}
    if origin is dict:
        return {"type": "object", "additionalProperties": json_schema(args[1], components)}
    if attrs.has(tp):
        return _component(tp, components)
    raise TypeError(f"no JSON schema for {tp!r}")


def _component(cls: type, components: dict[str, Any]) -> dict[str, Any]:
    name = cls.__name__
    if name not in components:
        components[name] = {}  # placeholder first: a class may refer to itself
        fields = attrs.fields(attrs.resolve_types(cls))
        properties = {
            field.name: json_schema(field.type, components) | field.metadata.get(SCHEMA, {})
            for field in fields
        }
        components[name] = {
            "type": "object",
            "description": (cls.__doc__ or "").strip(),
            "properties": properties,
            "required": [field.name for field in fields if field.default is attrs.NOTHING],
        }
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in op.path_parameters()
    ]
    parameters += [
        {"name": p.name, "in": "query", "description": p.description, "schema": p.schema}
        for p in op.query
    ]
    if op.content_type == "application/json":
        content = _json(json_schema(op.response, components))
    else:
        content = {op.content_type: {"schema": {"type": "string"}}}
    responses = {str(s): {"description": op.summary, "content": content} for s in op.statuses}
    error = json_schema(ErrorBody, components)
    for status in sorted({*op.errors, 400, *((401,) if op.auth else ())}):
        responses[str(status)] = {"description": ERROR_MEANINGS[status], "content": _json(error)}
    document: dict[str, Any] = {
        "operationId": op.handler.__name__.strip("_"),
        "summary": op.summary,
        "description": op.description,
        "parameters": parameters,
        "responses": responses,
        "security": [{"bearer": []}] if op.auth else [],
    }
    if op.body is not None:
        document["requestBody"] = {
            "required": op.body_required,
            "content": _json(json_schema(op.body, components)),
        }
    return document


def openapi_document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The whole document for ``operations``."""
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, components)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "trio-sessions admin API",
            "version": API_VERSION,
            "description": "The operators' API of a trio-sessions server (docs/operations.md).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
