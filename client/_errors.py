"""Exceptions the client raises."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._events import LostReason


class RequestError(Exception):
    """The server answered a request with ``ok: false``.

    ``code`` is one of the protocol's error codes (``"forbidden"``, ``"conflict"``, ...);
    ``details`` holds any extra fields of the error (e.g. ``{"version": 7}`` for a conflict).
    """

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details

    def __repr__(self) -> str:
        return f"RequestError({self.code!r}, {self.message!r})"


class ConnectionLost(Exception):
    """The request's connection dropped before its reply, or the client gave up for good.

    ``cause`` (a :class:`client.LostReason`, ``None`` for a mere drop) says why the client gave
    up: :func:`client.connect` raises it with ``UNAUTHORIZED`` when the server refuses the
    token, ``GAVE_UP`` when no link came up within ``Backoff.give_up_after``.
    """

    def __init__(self, message: str, cause: LostReason | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class LinkClosed(Exception):
    """A link ended; ``code`` is the WebSocket close code (``protocol.ABNORMAL_CLOSURE``, 1006,
    when there was no close frame). Raised by every link: the client's, the simulated network's
    and the load tool's."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"link closed with {code} {reason}".strip())
        self.code = code
        self.reason = reason
