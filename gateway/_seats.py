"""Which sessions a connection holds seats in, and which of them ended (for error messages)."""

from __future__ import annotations

from typing import Final

import attrs

from actors import SessionHandle
from protocol import ErrorCode, ProtocolError

ENDED_REMEMBERED: Final = 16  # ended sessions a connection remembers the reason of


@attrs.frozen
class Seat:
    """A seat this connection holds: the session's address and the participant id."""

    session: SessionHandle
    participant_id: str


class SeatMap:
    """Session code -> the seat this connection holds there; at most ``limit`` of them."""

    __slots__ = (
        "_ended",
        "_seats",
        "limit",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seats: dict[str, Seat] = {}
        self._ended: dict[str, str] = {}  # code -> why it ended, the last ENDED_REMEMBERED

    def __len__(self) -> int:
        return len(self._seats)

    def seats(self) -> list[Seat]:
        """Every seat held, oldest first."""
        return list(self._seats.values())

    def get(self, code: str) -> Seat | None:
        """The seat held in session ``code``."""
        return self._seats.get(code)

    def add(self, seat: Seat) -> None:
        """Hold ``seat`` (replacing a seat in the same session)."""
        self._seats[seat.session.code] = seat
        self._ended.pop(seat.session.code, None)

    def ended(self, code: str, reason: str) -> Seat | None:
        """The seat in ``code`` is gone for ``reason``; returns it if it was held."""
        seat = self._seats.pop(code, None)
        self._ended.pop(code, None)
        if reason not in ("left", "replaced"):  # the session itself ended
            self._ended[code] = reason
            while len(self._ended) > ENDED_REMEMBERED:
                del self._ended[next(iter(self._ended))]
        return seat

    def has_room_for(self, code: str) -> bool:
        """Whether a seat in session ``code`` fits within the limit."""
        return code in self._seats or len(self._seats) < self.limit

    def check_room_for(self, code: str) -> None:
        """``session_limit`` if entering session ``code`` would exceed the limit."""
        if not self.has_room_for(code):
            raise ProtocolError(
                ErrorCode.SESSION_LIMIT,
                f"a connection may hold seats in at most {self.limit} sessions; leave one first",
            )

    def target(self, code: str | None) -> Seat:
        """The seat a session-scoped request is for: the one named by its ``session`` field, or
        the only one held. Raises the documented error when there is none or it is ambiguous."""
        if code is not None:
            seat = self._seats.get(code.upper())
            if seat is None:
                raise self._not_seated(code.upper())
            return seat
        if len(self._seats) == 1:
            return next(iter(self._seats.values()))
        if not self._seats:
            raise self._not_seated(next(reversed(self._ended), None))
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "session: required when the connection holds seats in several sessions "
            f"({', '.join(self._seats)})",
        )

    def _not_seated(self, code: str | None) -> ProtocolError:
        if code is not None and code in self._ended:
            return ProtocolError(
                ErrorCode.SESSION_CLOSED, f"your session {code} has ended ({self._ended[code]})"
            )
        if code is None:
            return ProtocolError(
                ErrorCode.BAD_REQUEST, "not in a session: create or join one first"
            )
        return ProtocolError(ErrorCode.BAD_REQUEST, f"session: not seated in session {code}")
