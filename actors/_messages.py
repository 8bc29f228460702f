"""What travels into a session actor's inbox, and the interface actors deliver through."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    import trio

    from protocol import CloseCode, ProtocolError, Ref, Request

    from ._supervisor import SessionHandle


class Peer(Protocol):
    """A client connection as an actor sees it. No method blocks.

    How frames reach the socket is the connection's business: actors only hand over encoded
    frames, so the delivery path can change without touching them.
    """

    connection_id: str
    user_id: str
    name: str
    participant_id: str | None  # the seat it is bound to, set through bind/unbind

    def deliver(self, frame: str) -> bool:
        """Queue one frame. ``False`` if the peer is gone or was just cut off as a slow consumer."""

    def deliver_many(self, frames: list[str]) -> bool:
        """Queue frames as one unit (a replay), in order."""

    def reply(self, ref: Ref, data: dict[str, object]) -> None:
        """Queue a successful reply (dropped when the request carried no ``ref``)."""

    def reply_error(self, ref: Ref, error: ProtocolError) -> None:
        """Queue a failed reply."""

    def close(self, code: CloseCode, reason: str) -> None:
        """Close after the frames already queued have been sent."""

    def bind(self, session: SessionHandle, participant_id: str) -> None:
        """Route this connection's later requests to ``session`` as ``participant_id``."""

    def unbind(self, session: SessionHandle, reason: str) -> None:
        """Forget ``session`` if this connection is bound to it; ``reason`` is why it ended."""


@attrs.frozen(eq=False)
class Command:
    """A client request routed to the actor. ``done`` is set once the actor has answered it."""

    peer: Peer
    ref: Ref
    request: Request
    done: trio.Event | None = None


@attrs.frozen(eq=False)
class PeerGone:
    """The peer's connection ended without ``session:leave``."""

    peer: Peer


@attrs.frozen
class InjectFault:
    """Makes the actor raise, to test fault isolation (used by tests and the simulator)."""


Message = Command | PeerGone | InjectFault
