"""Server limits and timings, with their defaults. Every duration is in seconds of Trio's clock.

Each field is a command-line flag and an environment variable (``server.py``); the text after a
field's ``#`` is its ``--help`` line.
"""

from __future__ import annotations

import urllib.parse
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
    metrics: bool = True  # serve /metrics (on the admin port; see public_metrics)
    store: str = "memory"  # where sessions outlive the process: memory, or sqlite:PATH
    durability: str = "default"  # default (write-behind) or strict (reply after commit)
    history_retention: float = 30 * 86400.0  # seconds a closed session's record is kept
    shutdown_timeout: float = 10.0  # seconds a graceful stop may take (SIGTERM, SIGINT)
    # ---- authentication (docs/security.md)
    jwt_secret: str = ""  # HS256 shared secret that signs hello tokens (empty: none)
    jwt_public_key: str = ""  # PEM public key or JWKS file verifying RS256/ES256 hello tokens
    jwt_audience: str = ""  # required aud claim of hello tokens (empty: not checked)
    jwt_issuer: str = ""  # required iss claim of hello tokens (empty: not checked)
    jwt_leeway: float = 30.0  # seconds of clock skew allowed on exp and nbf
    allow_anonymous: bool = False  # with a key configured, admit connections without a token
    insecure: bool = False  # serve a non-loopback address without any authentication
    # ---- authorization and abuse limits (docs/security.md)
    code_length: int = 6  # characters of a new session code (alphabet of 31)
    max_sessions_per_host: int = 1  # live sessions one user may host at once
    sessions_per_minute: int = 10  # sessions one user may create per minute
    max_connections_per_address: int = 256  # open connections from one client address
    max_connections_per_user: int = 32  # open connections of one authenticated user
    connections_per_second: float = 10.0  # new connections per second per client address
    connection_burst: int = 50  # new connections one client address may open at once
    join_failures_per_connection: int = 5  # failed joins before the connection is closed (1008)
    join_failures_per_address: int = 20  # failed joins from one address before a lock-out
    join_lockout: float = 60.0  # seconds of the first lock-out; each next one doubles, to a day
    join_failures_per_second: float = 50.0  # failed joins per second server-wide
    trusted_proxy: str = ""  # comma-separated proxy addresses whose X-Forwarded-For is believed
    # ---- live sessions (ward and guardians)
    live_grace: float = 60.0  # seconds a live session waits for its ward to come back
    # ---- operators' surface (docs/operations.md)
    admin_host: str = "127.0.0.1"  # address of the admin HTTP API
    admin_port: int = 8766  # port of the admin HTTP API (0 picks a free one, -1: off)
    admin_token: str = ""  # bearer token the admin API requires (required off loopback)
    public_metrics: bool = False  # also serve /metrics on the public WebSocket port
    log_format: str = "text"  # text or json (one object per line)
    stats_interval: float = 60.0  # seconds between stats log lines (0: off)
    # cluster mode (docs/cluster.md)
    cluster: str = (
        ""  # redis://HOST:PORT/DB shared by the nodes of one cluster (empty: single node)
    )
    node_id: str = ""  # this node's name in the cluster, unique among live nodes (empty: host-pid)
    lease_ttl: float = 5.0  # seconds a node's lease lives unrenewed; then others take its sessions

    @property
    def auth_enabled(self) -> bool:
        """A key is configured: hello tokens are verified, and identities can be trusted."""
        return bool(self.jwt_secret or self.jwt_public_key)

    def __attrs_post_init__(self) -> None:
        if self.store != "memory" and not (self.store.startswith("sqlite:") and self.store[7:]):
            raise ValueError(f"store must be memory or sqlite:PATH, not {self.store!r}")
        if self.durability not in ("default", "strict"):
            raise ValueError(f"durability must be default or strict, not {self.durability!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be text or json, not {self.log_format!r}")
        database = urllib.parse.urlparse(self.cluster).path.strip("/")
        if self.cluster and not (
            self.cluster.startswith(("redis://", "rediss://"))
            and (database == "" or database.isdigit())
        ):
            raise ValueError(
                f"cluster must be a redis:// or rediss:// URL (with a database number), "
                f"not {self.cluster!r}"
            )
        if self.lease_ttl < 0.5:
            raise ValueError(f"lease_ttl must be at least 0.5 seconds, not {self.lease_ttl}")
        if not 4 <= self.code_length <= 12:
            raise ValueError(f"code_length must be 4-12, not {self.code_length}")
        if self.max_message_size < self.max_state_size + STATE_ENVELOPE:
            raise ValueError(
                f"max_message_size ({self.max_message_size}) must be at least max_state_size "
                f"+ {STATE_ENVELOPE} ({self.max_state_size + STATE_ENVELOPE}), so that any state "
                "that may be stored can be sent in one state:set"
            )
