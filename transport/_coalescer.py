"""One system call per connection per scheduler pass: the write coalescer."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, Protocol

import trio


class Coalesced(Protocol):
    """What the coalescer writes for: a transport with frames waiting for the next pass."""

    def write_pending(self) -> None:
        """Write what was queued since the last pass, without blocking."""
        ...


class WriteCoalescer:
    """Writes every connection's frames of one scheduler pass with one ``send`` each.

    Frames are not written where they are sent (a session actor broadcasting, a reader
    answering a ping) but queued per connection, which marks itself here; this task runs once
    the senders yield, so a connection that got several frames meanwhile (under load, several
    broadcasts) costs one system call instead of one per frame. One per listener set, in
    ``serve_websocket``'s nursery; :meth:`run` never returns unless cancelled.

    ``on_pass`` (metrics) is given, after each pass, the seconds from the pass's first mark to
    the end of its writes: how long the frames of a broadcast waited for the socket, for the
    last member written. Two clock reads per pass, whatever its size.
    """

    def __init__(self, on_pass: Callable[[float], None] | None = None) -> None:
        self._dirty: list[Coalesced] = []
        self._wake = trio.Event()
        self._on_pass = on_pass
        self._first_mark = 0.0  # Trio time of the first mark of the coming pass

    def mark(self, transport: Coalesced) -> None:
        """Have ``transport.write_pending()`` called on the next pass (once per mark)."""
        if not self._dirty and self._on_pass is not None:
            self._first_mark = trio.current_time()
        self._dirty.append(transport)
        self._wake.set()

    async def run(self) -> NoReturn:
        """Run the passes until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            dirty, self._dirty = self._dirty, []
            for transport in dirty:
                transport.write_pending()
            if self._on_pass is not None and dirty:
                self._on_pass(trio.current_time() - self._first_mark)
