"""What a connection task needs from a transport. Implementations: WebSocket, and in memory."""

from __future__ import annotations

from typing import Protocol


class TransportClosed(Exception):
    """The other side went away (close frame, reset, or end of stream)."""


class Transport(Protocol):
    """One client link carrying text frames.

    ``receive``, ``send`` and ``ping`` raise :class:`TransportClosed` once the link is gone.
    ``aclose`` and ``abort`` may be called more than once and never raise.
    """

    remote: str

    async def receive(self) -> str | bytes:
        """The next frame: ``str`` for text, ``bytes`` for binary."""
        ...

    async def send(self, frame: str) -> None:
        """Send one text frame."""
        ...

    def send_nowait(self, frame: str) -> bool:
        """Send one text frame if that needs no waiting; ``False`` if it was not sent."""
        ...

    async def ping(self) -> None:
        """Send a ping and wait for its pong, which arrives while another task is in ``receive``."""
        ...

    async def aclose(self, code: int, reason: str) -> None:
        """Close with a WebSocket close code and wait for the closing handshake."""
        ...

    async def abort(self) -> None:
        """Drop the link at once, without a close frame (after a write was cut short)."""
        ...
