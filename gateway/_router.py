"""Where a connection's session requests go, which seats it holds, and the order of replies.

Requests from one connection are answered in the order they were sent. While they go to one
session, its actor answers them in inbox order. Before the connection answers a request itself
(a decode error, a rate limit, a ping) or routes one to another session, it *settles*: waits
until every command already routed has been answered (``command_done``). That costs nothing
while requests go to one session and are valid.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import trio

from actors import CloseSession, Command, PeerGone, SessionHandle
from protocol import (
    ErrorCode,
    LiveStart,
    LiveWatch,
    ProtocolError,
    Ref,
    SessionCreate,
    SessionJoin,
    SessionRequest,
    SessionResume,
    parse_token,
)

from ._seats import Seat, SeatMap

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from actors import Peer, Supervisor

Entry = SessionCreate | SessionJoin | SessionResume

logger = logging.getLogger(__name__)


class Router:
    """Routes one connection's session requests to actors and keeps their replies in order."""

    __slots__ = (
        "_in_flight",
        "_in_flight_to",
        "_locate",
        "_settled",
        "_supervisor",
        "seats",
    )

    def __init__(
        self,
        supervisor: Supervisor,
        max_seats: int,
        locate: Callable[[str], Awaitable[SessionHandle | None]] | None = None,
    ) -> None:
        # The connection (the peer) is passed to each call rather than held: the connection
        # holds its router, and a reference back would make them a cycle.
        self._supervisor = supervisor
        self._locate = locate  # cluster mode: a session another node owns
        self.seats = SeatMap(max_seats)
        self._in_flight = 0  # commands routed to an actor and not yet answered
        self._in_flight_to: SessionHandle | None = None  # ... all to this session
        self._settled: trio.Event | None = None  # set when _in_flight drops to 0

    def command_done(self) -> None:
        """An actor answered one of the commands routed (``Peer.command_done``)."""
        self._in_flight -= 1
        if not self._in_flight and self._settled is not None:
            self._settled.set()

    async def settle(self) -> None:
        """Wait until every command routed so far has been answered."""
        while self._in_flight:
            self._settled = trio.Event()
            await self._settled.wait()
        self._settled = None

    async def enter(self, peer: Peer, ref: Ref, request: Entry) -> None:
        """Create, join or resume, and hold the seat the actor answers with."""
        if isinstance(request, SessionCreate):
            target = await self._open(peer.user_id, request)
        elif isinstance(request, SessionJoin):
            found = await self._lookup(request.code.upper())
            if found is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no live session {request.code!r}")
            target = found
        else:
            token = parse_token(request.token)
            if token is None:
                raise ProtocolError(ErrorCode.UNAUTHORIZED, "invalid or expired resume token")
            found = await self._lookup(token.code)
            if found is None:
                raise ProtocolError(ErrorCode.SESSION_CLOSED, "the session of this token has ended")
            target = found
        await self._enter(peer, ref, request, target)

    async def _lookup(self, code: str) -> SessionHandle | None:
        """The session ``code``: live here, or (cluster mode) on another node."""
        found = self._supervisor.lookup(code)
        if found is None and self._locate is not None:
            found = await self._locate(code)
        return found

    async def go_live(self, peer: Peer, ref: Ref, request: LiveStart, guardians: list[str]) -> None:
        """Open ``peer``'s live session, watched by ``guardians``, and hold the ward's seat."""
        self.seats.check_room_for("")  # checked before a session is opened
        live = self._supervisor.open_live(peer.user_id, guardians, request.meta)
        await self._enter(peer, ref, request, live)

    async def watch(self, peer: Peer, live: SessionHandle) -> None:
        """Ask ``live`` to seat ``peer`` as one of its guardians (after its hello)."""
        try:
            await self._enter(peer, None, LiveWatch(), live)
        except ProtocolError as error:  # no room for one more seat, or the session just ended
            logger.info(
                "%s not seated in live session %s: %s",
                peer.user_id,
                live.code,
                error,
                extra={"session": live.code, "connection": peer.connection_id},
            )

    def granted(self, session: SessionHandle, participant_id: str) -> bool:
        """The actor of ``session`` seated this connection on its own (``Peer.seat_granted``)."""
        if not self.seats.has_room_for(session.code):
            return False
        self.seats.add(Seat(session, participant_id))
        return True

    async def _enter(
        self, peer: Peer, ref: Ref, request: Entry | LiveStart | LiveWatch, target: SessionHandle
    ) -> None:
        self.seats.check_room_for(target.code)
        held = self.seats.get(target.code)
        command = Command(peer, ref, request, held.participant_id if held else None)
        await self._route(target, command)
        await self.settle()
        if command.seat is not None and target.closed_reason is None:
            self.seats.add(Seat(target, command.seat))

    async def _open(self, user_id: str, request: SessionCreate) -> SessionHandle:
        hosted = None if request.fresh or request.another else self._supervisor.hosted(user_id)
        self.seats.check_room_for(hosted or "")  # checked before a session is opened
        opened = self._supervisor.open_session(
            user_id, fresh=request.fresh, another=request.another, meta=request.meta
        )
        if opened.replaced is not None:  # fresh: the old session ends before the new one answers
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await opened.replaced.send(CloseSession("replaced_by_host"))
            await opened.replaced.finished.wait()
        return opened.handle

    async def to_seat(self, peer: Peer, ref: Ref, request: SessionRequest) -> None:
        """Route a session-scoped request to the seat it names (or the only one held)."""
        seat = self.seats.target(request.session)
        await self._route(seat.session, Command(peer, ref, request, seat.participant_id))

    async def _route(self, session: SessionHandle, command: Command) -> None:
        if self._in_flight and self._in_flight_to is not session:
            await self.settle()  # replies from two actors would race: one at a time
        self._in_flight += 1  # before the send: the actor may answer before send returns
        self._in_flight_to = session
        try:
            await session.send(command)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._in_flight -= 1
            self.seats.ended(session.code, session.closed_reason or "closed")
            raise ProtocolError(
                ErrorCode.SESSION_CLOSED, f"session {session.code} has ended"
            ) from None

    async def leave_all(self, peer: Peer) -> None:
        """The connection ended: every session it holds a seat in starts that seat's grace."""
        for seat in self.seats.seats():
            self.seats.ended(seat.session.code, "left")
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await seat.session.send(PeerGone(peer, seat.participant_id))
