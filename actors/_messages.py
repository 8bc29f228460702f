"""How others reach a session actor: its address, what travels into its inbox, and the interface
it delivers to connections through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

if TYPE_CHECKING:
    from protocol import CloseCode, LiveWatch, ProtocolError, Ref, Reply, Request

    from ._inspection import SessionView


class Peer(Protocol):
    """A client connection as an actor sees it. No method blocks.

    How frames reach the socket is the connection's business: actors only hand over encoded
    frames, so the delivery path can change without touching them.
    """

    connection_id: str
    user_id: str
    name: str
    anonymous: bool  # admitted without a token on a server that authenticates

    def deliver(self, frame: str) -> bool:
        """Queue one frame. ``False`` if the peer is gone or was just cut off as a slow consumer."""

    def reply(self, ref: Ref, data: Reply) -> None:
        """Queue a successful reply (dropped when the request carried no ``ref``)."""

    def reply_error(self, ref: Ref, error: ProtocolError) -> None:
        """Queue a failed reply."""

    def command_done(self) -> None:
        """The actor has answered one more of this peer's commands (called once per command)."""

    def seat_ended(self, code: str, reason: str, close: CloseCode | None = None) -> None:
        """This peer's seat in session ``code`` is gone (``reason``); later requests for it get
        ``session_closed``. ``close``: close the connection with it if no other seat is left."""

    def seat_granted(self, session: SessionHandle, participant_id: str) -> bool:
        """The server seated this peer in ``session`` without a request of its own (a guardian
        in a live session): route its requests there. ``False`` if it cannot hold one more
        seat, or is closing; the actor then gives the seat up."""


class Directory(Protocol):
    """The connections of each user, for actors that reach users rather than seats (live
    sessions). Never blocks."""

    def peers_of(self, user_id: str) -> Sequence[Peer]:
        """``user_id``'s open connections, the newest last."""
        ...


class NoDirectory:
    """A :class:`Directory` that knows nobody (tests, simulations without live sessions)."""

    def peers_of(self, user_id: str) -> Sequence[Peer]:
        return ()


@attrs.define(eq=False)
class Command:
    """A client request routed to the actor, as the seat ``participant_id`` (``None`` before
    it has one). The actor answers it exactly once, then calls ``peer.command_done()``; for a
    create, join or resume it also sets ``seat`` to the participant id the peer now holds."""

    peer: Peer
    ref: Ref
    request: Request | LiveWatch
    participant_id: str | None = None
    seat: str | None = None
    answered: bool = False


@attrs.frozen(eq=False)
class PeerGone:
    """The peer's connection ended without ``session:leave``."""

    peer: Peer
    participant_id: str


@attrs.frozen
class CloseSession:
    """Close the session now, telling everyone ``reason`` (a fresh create, an operator)."""

    reason: str


@attrs.define(eq=False)
class Inspect:
    """An operator asks how the session is. The actor sets ``view`` and then ``done``; a session
    that ends before it gets to the message sets ``done`` and leaves ``view`` ``None``."""

    view: SessionView | None = None
    done: trio.Event = attrs.Factory(trio.Event)


@attrs.define(eq=False)
class CloseIfIdle:
    """An operator's cleanup: close the session (reason ``admin_cleanup``) if no seat has a
    live connection and nothing happened for ``max_inactive`` seconds. The actor decides, in
    its own task, so a client that just arrived is never cut off. Sets ``closed``, then
    ``done`` (also when the session ended first)."""

    max_inactive: float
    closed: bool = False
    done: trio.Event = attrs.Factory(trio.Event)


@attrs.frozen
class SetGuardians:
    """A live session's guardians changed (an operator added or removed a relation): seat the
    new ones that are connected, give up the seats of those removed."""

    guardians: tuple[str, ...]


@attrs.frozen
class Relinquish:
    """Another node owns the session now (cluster mode: this node's lease was lost and the
    session taken over). Stop serving it without closing it: nothing is written or published;
    each connection seated here is closed with 1012, so its client resumes at the new owner."""


@attrs.frozen
class SaveNow:
    """Hand the store the whole session now (cluster mode: the shared store lost its data)."""


@attrs.frozen
class InjectFault:
    """Makes the actor raise, to test fault isolation (used by tests and the simulator)."""


Message = (
    Command
    | PeerGone
    | CloseSession
    | Inspect
    | CloseIfIdle
    | SetGuardians
    | Relinquish
    | SaveNow
    | InjectFault
)


class CodeSource(Protocol):
    """Where new session codes come from. Never blocks."""

    def new_code(self, taken: Mapping[str, object], length: int) -> str:
        """A code of ``length`` characters, not in ``taken`` and not used elsewhere; raises
        ``ProtocolError`` (``unavailable``) when none can be had now."""
        ...


@attrs.define(eq=False)
class SessionHandle:
    """A session actor's address: its code and the send end of its inbox.

    The supervisor owns the send end and closes it when the actor is reaped; after that,
    :meth:`send` raises ``trio.BrokenResourceError`` or ``trio.ClosedResourceError``.
    ``closed_reason`` is set by the actor when the session ends.
    """

    code: str
    host_user_id: str
    _inbox: trio.MemorySendChannel[Message]
    finished: trio.Event = attrs.Factory(trio.Event)
    closed_reason: str | None = None

    def inbox_depth(self) -> int:
        """Messages queued in the inbox now (metrics)."""
        return self._inbox.statistics().current_buffer_used

    async def send(self, message: Message) -> None:
        """Queue ``message`` for the actor, waiting while its inbox is full (back-pressure)."""
        await self._inbox.send(message)

    def inject_fault(self) -> None:
        """Make the actor raise, as a bug would (tests and the simulator use this)."""
        self._inbox.send_nowait(InjectFault())

    def close_inbox(self) -> None:
        """The supervisor's, when it reaps the actor."""
        self._inbox.close()
