"""The client's typed requests: one method per protocol request, returning the typed reply.

Session-scoped methods take ``session=`` (a session code) to say which of the connection's
seats they are for; without it they go to the only session held (the server answers
``bad_request`` "session: required ..." when the connection holds several).
"""

from __future__ import annotations

from typing import Any, TypeVar

from protocol import Empty, LiveReply, Reply, RoomReply, SeatReply, SeqReply, VersionReply

_R = TypeVar("_R")


def _fields(**fields: Any) -> dict[str, Any]:
    """Request fields without the optional ones left at ``None``."""
    return {name: value for name, value in fields.items() if value is not None}


class Requests:
    """The typed request methods, on top of :meth:`_call` (which the client provides)."""

    async def _call(self, kind: str, fields: dict[str, Any]) -> Reply:
        """Send ``kind`` with ``fields`` and return the typed reply's data."""
        raise NotImplementedError

    async def _typed(self, cls: type[_R], kind: str, fields: dict[str, Any]) -> _R:
        reply = await self._call(kind, fields)
        assert isinstance(reply, cls), f"{kind} answered with {type(reply).__name__}"
        return reply

    async def create_session(
        self,
        state: dict[str, Any] | None = None,
        *,
        participants_can_write_state: bool = False,
        fresh: bool = False,
        meta: dict[str, Any] | None = None,
        another: bool = False,
        allowed_users: list[str] | None = None,
        anonymous: bool = False,
    ) -> SeatReply:
        """Open a session as its host (or get back the one this user hosts, ``reused``).

        ``fresh`` closes the session this user already hosts and opens a new one; ``another``
        opens one more beside it (``session_limit`` past the server's ``max_sessions_per_host``).
        ``allowed_users``: only these user ids may join (the host always may); ``anonymous``:
        anonymous connections may join. Options left at their defaults are not sent.
        """
        fields = _fields(state=state, meta=meta, allowed_users=allowed_users)
        fields["participants_can_write_state"] = participants_can_write_state
        for flag, value in (("fresh", fresh), ("another", another), ("anonymous", anonymous)):
            if value:
                fields[flag] = True
        return await self._typed(SeatReply, "session:create", fields)

    async def start_live(
        self, state: dict[str, Any] | None = None, meta: dict[str, Any] | None = None
    ) -> LiveReply:
        """Go live as a ward: open a live session that only the guardians the server knows for
        this user watch (they are seated by the server). The reply is this client's host seat,
        with ``guardians`` and ``connected_guardians``; a ``live:started`` notice follows.
        Needs a signed-in user (``forbidden`` otherwise); ``already_live`` while live."""
        return await self._typed(LiveReply, "live:start", _fields(state=state, meta=meta))

    async def stop_live(self, *, session: str | None = None) -> None:
        """Ward: end the live session (everyone gets ``session:closed``, ``manual_stop``)."""
        await self._typed(Empty, "live:stop", _fields(session=session))

    async def join(self, code: str, meta: dict[str, Any] | None = None) -> SeatReply:
        """Join a session by code; returns the seat and the session's snapshot."""
        return await self._typed(SeatReply, "session:join", _fields(code=code, meta=meta))

    async def create_room(
        self,
        room: str,
        kind: str = "generic",
        meta: dict[str, Any] | None = None,
        *,
        session: str | None = None,
    ) -> RoomReply:
        """Host: open a room (``created`` is ``False`` if it was already open)."""
        fields = _fields(room=room, kind=kind, meta=meta, session=session)
        return await self._typed(RoomReply, "session:createRoom", fields)

    async def close_room(self, room: str, *, session: str | None = None) -> None:
        """Host: close a room."""
        await self._typed(Empty, "session:closeRoom", _fields(room=room, session=session))

    async def send(self, room: str, data: Any, *, session: str | None = None) -> int:
        """Relay ``data`` to the room's other members; returns the message's ``seq``."""
        fields = _fields(room=room, session=session)
        fields["data"] = data
        return (await self._typed(SeqReply, "room:message", fields)).seq

    async def set_state(
        self,
        state: dict[str, Any],
        expected_version: int | None = None,
        *,
        session: str | None = None,
    ) -> int:
        """Replace the session state; returns the new version."""
        fields = _fields(state=state, expected_version=expected_version, session=session)
        return (await self._typed(VersionReply, "state:set", fields)).version

    async def patch_state(
        self,
        patch: dict[str, Any],
        expected_version: int | None = None,
        *,
        session: str | None = None,
    ) -> int:
        """Amend the session state with a JSON merge patch; returns the new version."""
        fields = _fields(patch=patch, expected_version=expected_version, session=session)
        return (await self._typed(VersionReply, "state:patch", fields)).version

    async def leave(self, *, session: str | None = None) -> None:
        """Give up the seat now (the host leaving closes the session)."""
        await self._typed(Empty, "session:leave", _fields(session=session))

    async def close(self, *, session: str | None = None) -> None:
        """Host: end the session for everyone."""
        await self._typed(Empty, "session:close", _fields(session=session))
