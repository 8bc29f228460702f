"""A session's bounded log of recent event frames, for replay on resume."""

from __future__ import annotations

from collections import deque
from itertools import islice

import trio


class EventLog:
    """The last encoded events: at most ``max_events`` of them and ``max_bytes`` of text, none
    older than ``max_age`` seconds.

    Every participant is a member of every open room, so every event is for every participant
    and the log needs no per-recipient filtering.
    """

    def __init__(self, max_events: int, max_bytes: int, max_age: float) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._entries: deque[tuple[int, float, str]] = deque()
        self._bytes = 0  # characters of the frames held (ASCII-heavy JSON: about bytes)

    def append(self, seq: int, frame: str) -> None:
        """Record the frame of event ``seq`` (seqs must be appended in order)."""
        self._entries.append((seq, trio.current_time(), frame))
        self._bytes += len(frame)
        while len(self._entries) > self._max_events or (
            self._bytes > self._max_bytes and len(self._entries) > 1
        ):
            self._pop()

    def since(self, last_seq: int, current_seq: int) -> list[str] | None:
        """Frames of every event after ``last_seq``, or ``None`` if some are no longer held."""
        if last_seq == current_seq:
            return []
        if last_seq > current_seq:
            return None
        self.expire()
        if not self._entries or self._entries[0][0] > last_seq + 1:
            return None
        start = last_seq + 1 - self._entries[0][0]
        return [frame for _seq, _at, frame in islice(self._entries, start, None)]

    def tail(self) -> list[tuple[int, str]]:
        """``(seq, frame)`` of every event held, oldest first."""
        self.expire()
        return [(seq, frame) for seq, _at, frame in self._entries]

    def expire(self) -> None:
        """Forget events older than ``max_age``."""
        horizon = trio.current_time() - self._max_age
        while self._entries and self._entries[0][1] < horizon:
            self._pop()

    def _pop(self) -> None:
        self._bytes -= len(self._entries.popleft()[2])

    @property
    def size(self) -> int:
        """Characters of the frames held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
