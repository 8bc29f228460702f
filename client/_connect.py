"""``connect``: a client kept connected for the length of an ``async with`` block."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from ._auth import TokenProvider
from ._backoff import Backoff
from ._client import EVENT_BUFFER, Client
from ._errors import ConnectionLost
from ._events import ClientEvent
from ._links import Opener, websocket_opener
from ._reconnect import CONNECT_TIMEOUT


@asynccontextmanager
async def connect(
    target: str | Opener,
    *,
    token: str | None = None,
    token_provider: TokenProvider | None = None,
    name: str | None = None,
    backoff: Backoff | None = None,
    event_buffer: int = EVENT_BUFFER,
    connect_timeout: float = CONNECT_TIMEOUT,
    on_event: Callable[[ClientEvent], None] | None = None,
    wall: Callable[[], float] = time.time,
) -> AsyncIterator[Client]:
    """Connect to ``target`` (a ``ws://`` URL or an opener) and keep connected until exit.

    Returns once the first link is up; raises :class:`ConnectionLost` if that never happens
    within ``backoff.give_up_after``. Each step of every (re)connect (the link with its
    WebSocket handshake, ``hello``, each resume) must finish within ``connect_timeout``
    seconds, else the attempt counts as failed and the client backs off and retries. On exit
    the link is closed and reconnection stops.

    Identity: a fixed ``token``, or a ``token_provider`` (a function, plain or ``async``,
    returning a fresh token) that the client calls before every ``hello`` and, when the server
    says the token expires (``expires_at``), after 80% of its remaining life, to send
    ``auth:refresh``: a provider keeps a connection up for good, a fixed token only until it
    expires (close 4005, then ``lost`` with ``LostReason.TOKEN_EXPIRED``; or hand the client a
    new one with :meth:`Client.refresh_token` in time). A refused token (close 4004) raises
    :class:`ConnectionLost` here, ``cause`` ``LostReason.UNAUTHORIZED``. ``wall`` is the wall
    clock (seconds since the epoch) used only to turn the server's ``expires_at`` into seconds
    left; the refresh itself is timed on Trio's clock.

    ``on_event``, if given, receives every event instead of :attr:`Client.events`, called in
    the client's reader task as each frame is handled (one task wake-up less per event). It
    must not block; an exception it raises ends the client and comes out of this block.
    """
    opener = websocket_opener(target) if isinstance(target, str) else target
    client = Client(
        opener,
        token=token,
        token_provider=token_provider,
        wall=wall,
        name=name,
        backoff=backoff or Backoff(),
        event_buffer=event_buffer,
        connect_timeout=connect_timeout,
        on_event=on_event,
    )
    failed: ConnectionLost | None = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(client._run)
        except ConnectionLost as exc:  # raised below, outside the nursery, as itself
            failed = exc
        else:
            try:
                yield client
            finally:
                await client.aclose()
                nursery.cancel_scope.cancel()
    if failed is not None:
        raise failed
