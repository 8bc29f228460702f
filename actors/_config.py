"""Server limits and timings, with their defaults. Every duration is in seconds of Trio's clock."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class Config:
    """Limits and timings shared by the supervisor, session actors and connections."""

    host: str = "127.0.0.1"
    port: int = 8765
    max_message_size: int = 64 * 1024  # bytes per incoming frame; larger -> too_large + 1009
    hello_timeout: float = 10.0  # a connection must say hello within this
    heartbeat_interval: float = 25.0  # server pings this often; silent for 2x -> dropped
    idle_timeout: float = 30 * 60.0  # no connected client and no activity -> idle_timeout
    participant_grace: float = 60.0  # a dropped participant keeps its seat this long
    host_grace: float = 10 * 60.0  # a dropped host keeps the session hibernating this long
    max_rooms: int = 10  # per session
    max_participants: int = 500  # per session, host included
    max_state_size: int = 1024 * 1024  # bytes of the encoded state
    event_log_size: int = 1000  # events kept per session for replay
    event_log_age: float = 10 * 60.0  # ... and for at most this long
    send_buffer_size: int = 256 * 1024  # bytes a WebSocket keeps behind a full socket
    outbox_size: int = 256  # frames queued per connection before it counts as a slow consumer
    inbox_size: int = 64  # commands queued per session actor before senders wait
    rate_limit: float = 50.0  # requests per second per connection (0 disables)
    rate_burst: int = 100  # requests a connection may send at once before rate_limit applies
    metrics: bool = True  # serve GET /metrics and /healthz on the WebSocket port
