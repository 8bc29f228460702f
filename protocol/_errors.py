"""Error codes carried in replies, WebSocket close codes, and the exception that maps to them."""

from __future__ import annotations

import enum
from typing import Final


class ErrorCode(enum.StrEnum):
    """The ``error.code`` of a failed reply. See docs/protocol.md for when each is sent."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    ROOM_LIMIT = "room_limit"
    SESSION_FULL = "session_full"
    SESSION_LIMIT = "session_limit"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    SESSION_CLOSED = "session_closed"
    SEAT_BUSY = "seat_busy"
    CONFLICT = "conflict"
    ALREADY_LIVE = "already_live"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server sends. 4xxx codes are this protocol's own."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008  # sustained flooding after rate_limited replies
    TOO_LARGE = 1009  # a message larger than the hard frame limit
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # the server is restarting: reconnect with backoff and resume
    TRY_AGAIN_LATER = 1013  # too many connections from this address or user: back off longer
    HELLO_TIMEOUT = 4001  # no hello within hello_timeout
    REPLACED = 4002  # the same participant resumed on a newer connection: do not reconnect
    HEARTBEAT_TIMEOUT = 4003  # nothing heard for two heartbeat intervals
    UNAUTHORIZED = 4004  # the hello token was refused: reconnect only with another token
    TOKEN_EXPIRED = 4005  # the token expired without auth:refresh: reconnect with a fresh one
    SLOW_CONSUMER = 4008  # more unsent bytes queued than the connection's send budget


ABNORMAL_CLOSURE: Final = 1006
"""What a WebSocket library reports when a link ended without a close frame (never sent)."""


class ProtocolError(Exception):
    """A request failed with a documented error code; becomes an ``ok: false`` reply.

    ``extra`` is merged into the ``error`` object (e.g. ``{"version": 7}`` for ``conflict``).
    """

    def __init__(self, code: ErrorCode, message: str, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.message!r})"
