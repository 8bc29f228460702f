"""The opening handshake: the request head, upgrade validation, and plain HTTP answers.

h11 (the HTTP library trio-websocket itself uses) parses the request head and writes the
responses; nothing of it is used after the 101. The head is read here, byte-counted, so
``MAX_REQUEST_HEAD`` holds exactly. Relies on h11's public API (pinned in pyproject.toml).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import attrs
import h11
import trio

logger = logging.getLogger(__name__)

WS_PATH: Final = "/ws"
MAX_REQUEST_HEAD: Final = 16 * 1024  # bytes, from the request line to the blank line included
_HEAD_END: Final = b"\r\n\r\n"
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT: Final = "text/plain; charset=utf-8"

HttpRoute = Callable[[str], "tuple[int, str, bytes] | None"]
"""A plain-HTTP endpoint: called with the request path (no query), returns
``(status, content_type, body)``, or ``None`` for 404. ``HEAD`` gets the same status and headers
as ``GET``, without the body. In ``serve_websocket``'s ``http_routes``, a key is an exact path
(``/client.js``) or, when it ends in ``/``, a prefix (``/demo/`` serves ``/demo/`` and everything
below it); an exact key wins, then the longest prefix."""


class HeadTooLarge(Exception):
    """The request head did not end within ``MAX_REQUEST_HEAD`` bytes."""


@attrs.frozen
class Upgrade:
    """A valid WebSocket upgrade request: its key, the bytes read past its head, and its
    ``X-Forwarded-For`` values joined with commas (``None`` without one)."""

    key: bytes
    received: bytes
    forwarded_for: str | None = None


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


async def read_head(stream: trio.abc.Stream) -> bytes:
    """Read until the request head is complete; returns it with whatever came after it.

    Returns ``b""`` if the client closes first. Raises :class:`HeadTooLarge` once
    ``MAX_REQUEST_HEAD`` bytes arrived without the blank line that ends the head.
    """
    data = bytearray()
    while True:
        end = data.find(_HEAD_END)
        if end >= 0:
            if end + len(_HEAD_END) > MAX_REQUEST_HEAD:
                raise HeadTooLarge
            return bytes(data)
        if len(data) >= MAX_REQUEST_HEAD:
            raise HeadTooLarge
        chunk = await stream.receive_some(MAX_REQUEST_HEAD)
        if not chunk:
            return b""
        data += chunk


async def handshake(stream: trio.abc.Stream, routes: Mapping[str, HttpRoute]) -> Upgrade | None:
    """Read one request: answer it and return ``None``, or send the 101 for a valid upgrade.

    A request head over ``MAX_REQUEST_HEAD`` bytes is dropped unanswered (as documented). The
    caller bounds the time and closes ``stream`` when this returns ``None``.
    """
    head = await read_head(stream)
    if not head:
        return None
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    connection.receive_data(head)
    try:
        request = connection.next_event()
    except h11.RemoteProtocolError:
        await respond(connection, stream, 400, b"malformed HTTP request")
        return None
    if not isinstance(request, h11.Request):
        return None  # the head arrived whole, so this is an end of stream
    path = request.target.decode("latin-1").partition("?")[0]
    if path != WS_PATH:
        await _answer_route(connection, stream, request, path, routes)
        return None
    refusal = _refusal(request)
    if refusal is not None:
        status, body, headers = refusal
        await respond(
            connection, stream, status, body, headers=headers, head_only=_is_head(request)
        )
        return None
    if not isinstance(connection.next_event(), h11.EndOfMessage):
        await respond(connection, stream, 400, b"an upgrade request carries no body")
        return None
    key = _header(request, b"sec-websocket-key")[0]
    headers = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", accept_key(key).decode()),
    ]
    upgrade = h11.InformationalResponse(status_code=101, headers=headers)
    await stream.send_all(connection.send(upgrade))
    forwarded = b",".join(_header(request, b"x-forwarded-for")).decode("latin-1") or None
    return Upgrade(key, connection.trailing_data[0], forwarded)


async def respond(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    body: bytes,
    content_type: str = _TEXT,
    headers: Sequence[tuple[str, str]] = (),
    *,
    head_only: bool = False,
) -> None:
    """Send one whole response; ``head_only`` (for ``HEAD``) sends its head alone."""
    head = [("content-type", content_type), ("content-length", str(len(body))), *headers]
    data = connection.send(h11.Response(status_code=status, headers=head))
    if not head_only:
        data += connection.send(h11.Data(data=body))
    data += connection.send(h11.EndOfMessage())
    await stream.send_all(data)


def _header(request: h11.Request, name: bytes) -> list[bytes]:
    """Every value of header ``name`` (lower-case), in order."""
    return [value for key, value in request.headers if key == name]


def _tokens(request: h11.Request, name: bytes) -> set[bytes]:
    """The comma-separated, case-insensitive tokens of every ``name`` header."""
    return {
        token.strip().lower() for value in _header(request, name) for token in value.split(b",")
    }


def _is_head(request: h11.Request) -> bool:
    return request.method == b"HEAD"


Refusal = tuple[int, bytes, list[tuple[str, str]]]


def _refusal(request: h11.Request) -> Refusal | None:
    """Why a request to ``WS_PATH`` gets no 101 (RFC 6455 section 4.2.1), or ``None``."""
    version = [("upgrade", "websocket"), ("sec-websocket-version", "13")]
    if b"websocket" not in _tokens(request, b"upgrade") or b"upgrade" not in _tokens(
        request, b"connection"
    ):
        return 426, b"this endpoint speaks WebSocket only", version
    if request.method != b"GET":
        return 400, b"a WebSocket upgrade must be a GET", []
    if request.http_version < b"1.1":
        return 505, b"a WebSocket upgrade needs HTTP/1.1", []
    if _header(request, b"sec-websocket-version") != [b"13"]:
        return 426, b"only WebSocket version 13 is supported", version
    keys = _header(request, b"sec-websocket-key")
    if len(keys) != 1 or not _is_key(keys[0]):
        return 400, b"Sec-WebSocket-Key must be one base64-encoded 16-byte value", []
    return None


def _is_key(key: bytes) -> bool:
    """Whether ``key`` is base64 for 16 bytes."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def find_route(routes: Mapping[str, HttpRoute], path: str) -> HttpRoute | None:
    """The route for ``path``: an exact key, else the longest prefix key ending in ``/``."""
    if (route := routes.get(path)) is not None:
        return route
    prefixes = [key for key in routes if key.endswith("/") and path.startswith(key)]
    return routes[max(prefixes, key=len)] if prefixes else None


async def _answer_route(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    request: h11.Request,
    path: str,
    routes: Mapping[str, HttpRoute],
) -> None:
    """Answer a plain GET or HEAD from ``routes``; anything else gets 404."""
    route = find_route(routes, path) if request.method in (b"GET", b"HEAD") else None
    answer = route(path) if route is not None else None
    if answer is None:
        answer = 404, _TEXT, b"the WebSocket endpoint is " + WS_PATH.encode()
    status, content_type, body = answer
    await respond(connection, stream, status, body, content_type, head_only=_is_head(request))
