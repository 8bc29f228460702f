"""A session's state: plain attrs records that only the session's actor touches.

Runtime-only things (connections, timers) live on the actor, not here, so this structure can be
snapshotted with cattrs as it is.
"""

from __future__ import annotations

from typing import Any

import attrs

HOST = "host"
PARTICIPANT = "participant"
GUARDIAN = "guardian"  # a watcher seated by the server in a ward's live session
LIVE = "live"  # SessionState.kind of a ward's live session
ONLINE = "online"
AWAY = "away"
ACTIVE = "active"
HIBERNATING = "hibernating"


@attrs.define(kw_only=True)
class Participant:
    """A seat in a session. It survives its connection for the grace period."""

    id: str
    user_id: str
    name: str
    role: str
    token_hash: str  # sha256 of the resume token's secret; the token itself is never stored
    joined_seq: int  # the session's seq right after this participant joined
    presence: str = ONLINE
    meta: dict[str, Any] | None = None
    anonymous: bool = False  # seated by an anonymous connection: any anonymous one may resume


@attrs.define(kw_only=True)
class Room:
    """An open room inside a session."""

    name: str
    kind: str
    members: dict[str, None] = attrs.Factory(dict)  # participant ids, in joining order
    meta: dict[str, Any] | None = None


@attrs.define(kw_only=True)
class SessionState:
    """Everything that makes up a session, owned by its actor."""

    code: str
    epoch: str  # changes whenever the event log's continuity is lost
    host_user_id: str
    started_at: str  # wall-clock ISO 8601, display only
    host_id: str | None = None
    status: str = ACTIVE
    participants: dict[str, Participant] = attrs.Factory(dict)
    rooms: dict[str, Room] = attrs.Factory(dict)
    state: dict[str, Any] = attrs.Factory(dict)
    version: int = 0
    seq: int = 0
    participants_can_write_state: bool = False
    meta: dict[str, Any] | None = None
    kind: str = "session"  # "session", or "live": a ward's, watched by its guardians only
    allowed_users: list[str] | None = None  # user ids that may join (None: anyone with the code)
    anonymous: bool = False  # anonymous connections may join (authenticated servers)
