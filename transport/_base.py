"""What a connection task needs from a transport: WebSocket, and the simulated link."""

from __future__ import annotations

from typing import Protocol


class TransportError(Exception):
    """Base class of the transport package's errors."""


class TransportClosed(TransportError):
    """The other side went away (close frame, reset, or end of stream)."""


class SendBufferFull(TransportClosed):
    """The link holds more unsent bytes than its budget: the client does not keep up.

    Raised by :meth:`Transport.receive` once a frame the transport had to queue itself (a pong)
    went over the budget; :meth:`Transport.send_nowait` reports the same by returning ``False``.
    The caller closes the link as a slow consumer (4008).
    """


class Transport(Protocol):
    """One client link carrying text frames, with one ordered, byte-bounded send queue.

    Every frame the server sends on the link (data, pong, close) goes through the transport's one
    queue, in order, and counts against one byte budget. Nothing here blocks a sender:
    :meth:`send_nowait` queues or refuses. ``receive`` and ``ping`` raise
    :class:`TransportClosed` once the link is gone. ``aclose`` and ``abort`` may be called more
    than once and never raise. The socket itself is released by whoever opened the transport
    (an async context manager), so an error in a handler cannot leak it.
    """

    remote: str  # the peer, for logs
    client_host: str  # the network peer's address, without port (abuse limits key on it)
    forwarded_for: str | None  # the upgrade request's X-Forwarded-For, if any (proxies)
    heard_at: float  # Trio time of the last frame of any kind received (pongs included)

    @property
    def gone(self) -> bool:
        """Nothing more can be sent: the link is closing, closed or broken (so a refused
        ``send_nowait`` says nothing about the client's speed)."""
        ...

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`SendBufferFull` when the link went over its send budget, else
        :class:`TransportClosed` once the link is gone.
        """
        ...

    def send_nowait(self, frame: str) -> bool:
        """Queue one text frame. ``False`` (and nothing queued) once the queue holds more than
        the budget, or the link is closing or gone. A frame is accepted whenever the queue is
        within budget, so the worst case held is the budget plus one frame."""
        ...

    def ping_nowait(self) -> bool:
        """Queue a ping; its pong shows in ``heard_at``. ``False`` once the link is closing or
        gone, or when the queue is over budget (the transport is then overflowed: ``receive``
        raises :class:`SendBufferFull`)."""
        ...

    async def aclose(self, code: int, reason: str) -> None:
        """Queue a close frame after everything queued, wait until it is written and the peer's
        close frame arrives. Callers bound the wait with a cancel scope."""
        ...

    async def abort(self) -> None:
        """Drop the link at once, without a close frame."""
        ...
