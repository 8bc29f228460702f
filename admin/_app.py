"""The admin API as a small ASGI application: routing, the bearer token, bodies, JSON errors.

Each request is matched against the route table (``_routes.operations``): an unknown path is
404, a known path with another method 405 (with ``Allow``). Then, in this order: the bearer
token (401), shutting down (503), the query parameters (an unknown one is refused) and the body
(400, 413), the handler.
Every error is ``{"error": {"code", "message"}}``; a store that cannot be read or written is 503.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs

import orjson

from store import StoreError

from ._routes import AdminApi, ApiError, Call, Operation, Reply, operations
from ._schemas import BodyError, ErrorBody, ErrorDetail, converter, structure

if TYPE_CHECKING:
    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope

logger = logging.getLogger(__name__)

MAX_BODY: Final = 64 * 1024  # bytes of a request body


class AdminApp:
    """The ASGI application of one server's admin API. ``api`` holds what handlers use."""

    def __init__(self, api: AdminApi) -> None:
        self.api = api
        self._operations = operations()
        self._token = api.config.admin_token.encode()

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "no WebSocket here"})
        else:
            status, headers, body = await self._answer(scope, receive)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _answer(
        self, scope: HTTPScope, receive: ASGIReceiveCallable
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        method, path = scope["method"], scope["path"]
        headers: list[tuple[bytes, bytes]] = []
        try:
            reply = await self._dispatch(scope, receive, headers)
        except ApiError as error:
            reply = Reply(error.status, ErrorBody(ErrorDetail(error.code, error.message)))
        except StoreError as error:  # the file cannot be read or written: worth a retry later
            logger.warning("admin API: %s %s: %s", method, path, error)
            reply = Reply(503, ErrorBody(ErrorDetail("store_unavailable", str(error))))
        except Exception:  # a bug: answer 500, keep serving
            logger.exception("admin API: %s %s failed", method, path)
            reply = Reply(500, ErrorBody(ErrorDetail("internal", "internal error")))
        if isinstance(reply.body, bytes):
            body = reply.body
        else:
            body = orjson.dumps(converter.unstructure(reply.body))
        headers += [
            (b"content-type", reply.content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        logger.debug("admin API: %s %s -> %d", method, path, reply.status)
        return reply.status, headers, body

    async def _dispatch(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, headers: list[tuple[bytes, bytes]]
    ) -> Reply:
        op, path_params = self._route(scope["method"], scope["path"], headers)
        if op.auth and self._token and not self._authorized(scope):
            headers.append((b"www-authenticate", b"Bearer"))
            raise ApiError(401, "unauthorized", "a valid bearer token is required")
        if self.api.readiness.draining and not op.while_draining:
            raise ApiError(503, "shutting_down", "the server is shutting down")
        query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        if unknown := sorted(set(query) - {p.name for p in op.query}):
            raise ApiError(400, "bad_request", f"unknown query parameter: {unknown[0]}")
        params = {p.name: p.parse(query[p.name][0]) for p in op.query if p.name in query}
        body: object | None = None
        if op.body is not None:
            raw = await _read_body(receive)
            if raw.strip() or op.body_required:
                try:
                    body = structure(orjson.loads(raw) if raw.strip() else {}, op.body)
                except orjson.JSONDecodeError as error:
                    raise ApiError(400, "bad_request", f"the body is not JSON: {error}") from None
                except BodyError as error:
                    raise ApiError(400, "bad_request", str(error)) from None
        return await op.handler(self.api, Call(path_params, params, body))

    def _route(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[Operation, dict[str, str]]:
        """The operation for ``method`` at ``path`` (a literal path wins over a template)."""
        found = [(op, m) for op in self._operations if (m := op.match(path)) is not None]
        if not found:
            raise ApiError(404, "not_found", f"no such path: {path}")
        for op, params in sorted(found, key=lambda pair: len(pair[1])):
            if op.method == method:
                return op, params
        allowed = sorted({op.method for op, _ in found})
        headers.append((b"allow", ", ".join(allowed).encode()))
        raise ApiError(405, "method_not_allowed", f"{path} takes {', '.join(allowed)}")

    def _authorized(self, scope: HTTPScope) -> bool:
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token, self._token)
        return False


async def _read_body(receive: ASGIReceiveCallable) -> bytes:
    """The whole request body. Raises :class:`ApiError` (413) past ``MAX_BODY`` bytes."""
    body = bytearray()
    while True:
        event = await receive()
        if event["type"] != "http.request":  # the client went away
            return bytes(body)
        body += event["body"]
        if len(body) > MAX_BODY:
            raise ApiError(413, "too_large", f"the body is over {MAX_BODY} bytes")
        if not event["more_body"]:
            return bytes(body)
