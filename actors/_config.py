"""Server limits and timings, with their defaults. Every duration is in seconds of Trio's clock.

Each field is a command-line flag and an environment variable (``server.py``); the text after a
field's ``#`` is its ``--help`` line.
"""

from __future__ import annotations

from typing import Final

import attrs

STATE_ENVELOPE: Final = 1024  # bytes a compact state:set frame needs beyond the state itself
STATE_SLACK: Final = 64 * 1024  # bytes the default frame limit allows beyond the state limit


@attrs.frozen(kw_only=True)
class Config:
    """Limits and timings shared by the supervisor, session actors and connections."""

    host: str = "127.0.0.1"  # address to listen on
    port: int = 8765  # port to listen on (0 picks a free one)
    max_message_size: int = 1024 * 1024 + STATE_SLACK  # bytes per incoming frame
    hello_timeout: float = 10.0  # seconds a new connection has to send hello
    heartbeat_interval: float = 25.0  # seconds between pings of a quiet link; silent 2x -> dropped
    idle_timeout: float = 30 * 60.0  # seconds a session with nobody seated and connected lives
    participant_grace: float = 60.0  # seconds a dropped participant keeps its seat
    host_grace: float = 10 * 60.0  # seconds a dropped host's session hibernates
    seat_replace_interval: float = 1.0  # seconds after a seat was taken over before it may be again
    max_rooms: int = 10  # rooms per session
    max_participants: int = 500  # seats per session, host included
    max_sessions_per_connection: int = 16  # seats one connection may hold in different sessions
    max_state_size: int = 1024 * 1024  # bytes of a session's state, encoded as JSON
    event_log_size: int = 1000  # events kept per session for replay
    event_log_bytes: int = 4 * 1024 * 1024  # bytes of events kept per session for replay
    event_log_age: float = 10 * 60.0  # seconds an event is kept for replay
    send_buffer_size: int = 2 * 1024 * 1024  # bytes queued per connection before it is slow
    inbox_size: int = 64  # commands queued per session before senders wait
    rate_limit: float = 50.0  # messages per second per connection, malformed included (0: off)
    rate_burst: int = 100  # messages a connection may send at once before rate_limit applies
    frame_rate: float = 1000.0  # WebSocket frames of any kind per second per connection (0: off)
    frame_burst: int = 2000  # WebSocket frames a connection may send at once
    metrics: bool = True  # serve GET /metrics and /healthz on the WebSocket port
    store: str = "memory"  # where sessions outlive the process: memory, or sqlite:PATH
    durability: str = "default"  # default (write-behind) or strict (reply after commit)
    history_retention: float = 30 * 86400.0  # seconds a closed session's record is kept
    shutdown_timeout: float = 10.0  # seconds a graceful stop may take (SIGTERM, SIGINT)

    def __attrs_post_init__(self) -> None:
        if self.store != "memory" and not (self.store.startswith("sqlite:") and self.store[7:]):
            raise ValueError(f"store must be memory or sqlite:PATH, not {self.store!r}")
        if self.durability not in ("default", "strict"):
            raise ValueError(f"durability must be default or strict, not {self.durability!r}")
        if self.max_message_size < self.max_state_size + STATE_ENVELOPE:
            raise ValueError(
                f"max_message_size ({self.max_message_size}) must be at least max_state_size "
                f"+ {STATE_ENVELOPE} ({self.max_state_size + STATE_ENVELOPE}), so that any state "
                "that may be stored can be sent in one state:set"
            )
