"""Sans-IO seat bookkeeping: which seats the client holds and where each is in its session.

Pure state, fed by the client's reader in arrival order (replies and events) and read by its
reconnect loop to build one ``session:resume`` per seat. No I/O and no clock, so every rule here
is unit-tested on its own (``tests/test_client_seats.py``).

The position rule (docs/reconnection.md): ``last_seq`` is the highest seq this client has seen or
accounted for: events, the ``seq`` of a seat or resume reply, and the ``seq`` of its own room
messages. After a recovered resume the reply's ``seq`` counts only once the replayed events it
announced have all arrived, so a drop in the middle of a replay resumes from the last one seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from protocol import ResumeReply, SeatReply


@attrs.define
class Seat:
    """One seat the client holds: its identity, resume token, epoch and position."""

    code: str
    participant_id: str
    role: str
    token: str
    epoch: str
    last_seq: int
    replay_left: int = 0  # replayed events still to come after a recovered resume
    replay_to: int = 0  # ... and the position they lead to

    def observe(self, seq: int) -> None:
        """An event of this seat's session arrived."""
        self.last_seq = max(self.last_seq, seq)
        if self.replay_left:
            self.replay_left -= 1
            if not self.replay_left:
                self.last_seq = max(self.last_seq, self.replay_to)

    def resumed(self, reply: ResumeReply) -> None:
        """The seat was taken back on a new connection."""
        self.participant_id, self.role, self.epoch = reply.participant_id, reply.role, reply.epoch
        if not reply.recovered:  # a snapshot: the position is the session's, now
            self.last_seq, self.replay_left = reply.seq, 0
        elif reply.replayed:
            self.replay_left, self.replay_to = reply.replayed, reply.seq
        else:
            self.replay_left = 0
            self.last_seq = max(self.last_seq, reply.seq)

    def resume_fields(self) -> dict[str, Any]:
        """The fields of the ``session:resume`` that takes this seat back."""
        return {"token": self.token, "last_seq": self.last_seq, "epoch": self.epoch}


class SeatTracker:
    """The seats a client holds, by session code, in the order they were taken."""

    def __init__(self) -> None:
        self._seats: dict[str, Seat] = {}

    def __len__(self) -> int:
        return len(self._seats)

    def __iter__(self) -> Iterator[Seat]:
        return iter(list(self._seats.values()))

    def get(self, code: str | None) -> Seat | None:
        """The seat in session ``code``; with ``None``, the only seat (or the latest taken)."""
        if code is None:
            return next(reversed(self._seats.values()), None)
        return self._seats.get(code.upper())

    def seated(self, reply: SeatReply) -> Seat:
        """A new seat (or a fresh token for one held): a ``session:create``, ``session:join`` or
        ``live:start`` succeeded, or the server seated this connection as a guardian
        (``guardian:liveStarted``, which carries the same fields)."""
        seat = Seat(
            code=reply.code,
            participant_id=reply.participant_id,
            role=reply.role,
            token=reply.resume_token,
            epoch=reply.epoch,
            last_seq=reply.seq,
        )
        self._seats.pop(reply.code, None)  # re-seated: it becomes the latest
        self._seats[reply.code] = seat
        return seat

    def resumed(self, reply: ResumeReply) -> Seat | None:
        """A ``session:resume`` succeeded; ``None`` if the seat was given up meanwhile."""
        seat = self._seats.get(reply.code)
        if seat is not None:
            seat.resumed(reply)
        return seat

    def observe(self, session: str, seq: int) -> None:
        """An event with ``seq`` of ``session`` arrived (events of other sessions are ignored)."""
        seat = self._seats.get(session)
        if seat is not None:
            seat.observe(seq)

    def own_message(self, session: str | None, seq: int) -> None:
        """The reply to this client's own room message carried ``seq`` (it is not echoed)."""
        seat = self.get(session)
        if seat is not None:
            seat.last_seq = max(seat.last_seq, seq)

    def drop(self, seat: Seat) -> bool:
        """Forget ``seat`` if it is still the one held in its session (not re-seated since)."""
        if self._seats.get(seat.code) is not seat:
            return False
        del self._seats[seat.code]
        return True

    def ended(self, session: str | None) -> Seat | None:
        """The seat is gone (left, session closed, replaced, resume refused); returns it."""
        seat = self.get(session)
        if seat is not None:
            del self._seats[seat.code]
        return seat
