"""What the client tells the application besides session events: connection changes."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from protocol import Event, Notice, ResumeReply


class ConnectionState(enum.StrEnum):
    """What the client's connection is doing."""

    CONNECTED = "connected"  # a link is up and no seat was resumed on it
    RECONNECTING = "reconnecting"  # the link dropped; retrying with backoff
    RESUMED = "resumed"  # a link is up again and the seat ``session`` was resumed
    SEAT_LOST = "seat_lost"  # the seat ``session`` could not be resumed; others go on
    LOST = "lost"  # no more retries (gave up, replaced, or every seat is gone)


class LostReason(enum.StrEnum):
    """Why a seat or the whole client was lost (:attr:`ConnectionEvent.cause`)."""

    REPLACED = "replaced"  # close 4002: a newer connection has the seat; do not fight it
    RESUME_REFUSED = "resume_refused"  # the server refused the resume: see ``error_code``
    GAVE_UP = "gave_up"  # no connection within ``Backoff.give_up_after``
    UNAUTHORIZED = "unauthorized"  # close 4004: the hello token was refused (a provider's too)
    TOKEN_EXPIRED = "token_expired"  # close 4005 and no token provider to get a fresh token
    HELLO_REFUSED = "hello_refused"  # hello refused otherwise (bad_request): retrying cannot help


@attrs.frozen
class ConnectionEvent:
    """A change of connection state, delivered in order with the session's events.

    After ``RESUMED`` (one per seat, ``session`` naming it): ``recovered`` says whether the
    ``replayed`` missed events follow; when it is ``False``, ``snapshot`` holds the session as
    it is now, to rebuild from. ``seq`` is the position after the resume: the replayed events
    lead up to it, and a seq they do not cover is this client's own return
    (``participantBack``/``resumed``), which it is not sent.

    ``RECONNECTING`` carries ``code``: the close code of the link that dropped (1006 when it
    ended without a close frame, e.g. 1012 for a server restart, 4005 for an expired token).

    ``LOST`` and ``SEAT_LOST`` carry ``cause`` (a :class:`LostReason`), ``error_code`` (the
    protocol error code of a refused resume or hello, e.g. ``"unauthorized"``) and a readable
    ``reason`` (the server's, for a refused token: ``"hello refused: token expired"``).
    """

    state: ConnectionState
    recovered: bool | None = None
    replayed: int = 0
    snapshot: ResumeReply | None = None
    reason: str = ""
    seq: int | None = None
    session: str | None = None
    cause: LostReason | None = None
    error_code: str | None = None
    code: int | None = None


ClientEvent = Event | Notice | ConnectionEvent | dict[str, Any]
"""What :attr:`client.Client.events` yields: typed session events, notices (``seat:ended``,
``live:started``, ``guardian:liveStarted``, ``user:notice``), connection changes, and (as a plain
dict) any event type this client version does not know."""
