"""The one Redis client a node uses (coredis, on Trio through anyio), and what counts as Redis
being unavailable."""

from __future__ import annotations

import logging
import urllib.parse
from typing import Final

import coredis
import coredis.exceptions

# Redis is unreachable, restarting (loading its data), or too slow to answer in time.
REDIS_ERRORS: Final = (
    coredis.exceptions.ConnectionError,
    coredis.exceptions.ReadOnlyError,
    TimeoutError,
    OSError,
)
# coredis logs each first use of a script on a connection (NOSCRIPT, then loaded) at INFO
logging.getLogger("coredis").setLevel(logging.WARNING)

TIMEOUT: Final = 2.0  # seconds for a connection or a reply before Redis counts as unavailable


def database_of(url: str) -> int:
    """The database number a ``redis://`` URL names (its path, or ``?db=``; 0 by default)."""
    parsed = urllib.parse.urlparse(url)
    path = parsed.path.strip("/")
    query = urllib.parse.parse_qs(parsed.query).get("db", ["0"])[0]
    return int(path or query)


def redis_client(url: str) -> coredis.Redis[bytes]:
    """A client for ``url`` (``redis://HOST:PORT/DB``); use it as an async context manager,
    which owns its connection pool's tasks."""
    return coredis.Redis.from_url(
        url, decode_responses=False, stream_timeout=TIMEOUT, connect_timeout=TIMEOUT
    )
