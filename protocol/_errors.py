"""Error codes carried in replies, WebSocket close codes, and the exception that maps to them."""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    """The ``error.code`` of a failed reply. See docs/protocol.md for when each is sent."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    ROOM_LIMIT = "room_limit"
    SESSION_FULL = "session_full"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    SESSION_CLOSED = "session_closed"
    CONFLICT = "conflict"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server sends. 4xxx codes are this protocol's own."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down
    TOO_LARGE = 1009  # frame larger than the hard frame limit
    INTERNAL_ERROR = 1011
    HELLO_TIMEOUT = 4001  # no hello within hello_timeout
    REPLACED = 4002  # the same participant resumed on a newer connection: do not reconnect
    HEARTBEAT_TIMEOUT = 4003  # nothing heard for two heartbeat intervals
    SLOW_CONSUMER = 4008  # the connection's outbox was full


class ProtocolError(Exception):
    """A request failed with a documented error code; becomes an ``ok: false`` reply.

    ``extra`` is merged into the ``error`` object (e.g. ``{"version": 7}`` for ``conflict``).
    """

    def __init__(self, code: ErrorCode, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.message!r})"
