"""One connection's write path: one ordered queue, one byte budget, one writer at a time.

Every frame the server sends on a WebSocket (data, ping, pong, close) joins the queue, in order,
and counts against the budget until the kernel takes it. Once the tasks that are sending have
yielded, the :class:`~._coalescer.WriteCoalescer` writes the whole queue with one non-blocking
``os.write``; what the kernel does not take stays at the head of the queue for the flusher task
(:meth:`SendQueue.flush_loop`), which drains it with ``send_all`` while later frames queue
behind it. Only one of them writes at a time, and only whole queues, so frames never interleave.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import attrs
import trio

from ._coalescer import WriteCoalescer

logger = logging.getLogger(__name__)


@attrs.frozen
class TransportStatistics:
    """A snapshot of one connection's send queue."""

    queued: int  # bytes accepted and not yet taken by the kernel
    budget: int  # bytes: data frames are refused while more than this is queued
    overflowed: bool  # a control frame went over the budget: the client is a slow consumer


class SendQueue:
    """The queue, its budget, and its two writers (the coalescer's pass and the flusher).

    The budget holds as follows, one rule for every frame: a frame is accepted while the queue
    holds no more than ``budget`` bytes, so the queue holds at most the budget plus one frame.
    A data frame (:meth:`offer`) past that is refused; a ping or a pong (:meth:`control`) past
    that *overflows* the queue for good, and every later frame is refused. At most one pong
    waits unsent: a newer one replaces it (:meth:`pong`). The close frame (:meth:`close`, at
    most 127 bytes) is always accepted, and nothing is accepted after it. (A budget of 0 still
    lets a frame through whenever the queue is empty.)

    ``on_broken`` is called once, when nothing more can be written: a reset, a failed write, or
    :meth:`release`.
    """

    # Thousands of these live at once: no per-instance __dict__.
    __slots__ = (
        "_budget",
        "_coalescer",
        "_drained",
        "_fd",
        "_flushing",
        "_marked",
        "_on_broken",
        "_queue",
        "_queued",
        "_remote",
        "_stream",
        "_unsent_pong",
        "_wake_flusher",
        "broken",
        "closed",
        "overflowed",
        "start_flusher",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        coalescer: WriteCoalescer,
        budget: int,
        on_broken: Callable[[], None],
        remote: str = "?",
    ) -> None:
        self._stream = stream
        self._remote = remote  # for logs
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._coalescer = coalescer
        self._budget = budget
        self._on_broken = on_broken
        # A list, not a deque: an empty deque holds a 64-slot block, and most connections'
        # queues are empty between scheduler passes.
        self._queue: list[bytes | bytearray] = []
        self._queued = 0  # bytes queued or being flushed
        self._unsent_pong: bytearray | None = None  # still in the queue: a newer pong replaces it
        self._marked = False  # the coalescer will call write_pending
        self._flushing = False  # the flusher is in send_all: only it may write
        self._wake_flusher: trio.Event | None = None  # the flusher waits on it (made then)
        self._drained: trio.Event | None = None  # wait_drained waits on it (made then)
        # Starts the flusher task the first time the socket pushes back (set by the transport's
        # context manager): most connections never need one, and an idle task costs memory.
        self.start_flusher: Callable[[Callable[[], Awaitable[None]]], None] | None = None
        self.closed = False  # the close frame is queued
        self.overflowed = False
        self.broken = False

    def statistics(self) -> TransportStatistics:
        """How much is queued, against what budget."""
        return TransportStatistics(self._queued, self._budget, self.overflowed)

    # ---------------------------------------------------------------- adding frames

    def offer(self, frame: bytes) -> bool:
        """Queue a data frame; ``False`` (nothing queued) while over budget, once overflowed,
        closed or broken."""
        if self._queued > self._budget or self.overflowed or self.closed or self.broken:
            return False
        self._append(frame)
        return True

    def control(self, frame: bytes | bytearray) -> bool:
        """Queue a ping or pong; while over the budget, overflow the queue instead."""
        if self.overflowed or self.closed or self.broken:
            return False
        if self._queued > self._budget:
            logger.info("%s: send queue over its budget of %s bytes", self._remote, self._budget)
            self.overflowed = True
            return False
        self._append(frame)
        return True

    def pong(self, frame: bytes) -> None:
        """Queue a pong, replacing the one still unsent if any (RFC 6455 section 5.5.3)."""
        if (unsent := self._unsent_pong) is not None:
            self._queued += len(frame) - len(unsent)
            unsent[:] = frame
            return
        unsent = bytearray(frame)
        if self.control(unsent):
            self._unsent_pong = unsent

    def close(self, frame: bytes) -> None:
        """Queue the close frame, behind everything queued; nothing is accepted after it."""
        if not self.closed:
            self.closed = True
            self._append(frame)

    def _append(self, frame: bytes | bytearray) -> None:
        if self.broken:
            return
        self._queue.append(frame)
        self._queued += len(frame)
        if self._fd < 0:
            self._wake()
        elif not self._marked and not self._flushing:
            self._marked = True
            self._coalescer.mark(self)

    # ---------------------------------------------------------------- writing

    def write_pending(self) -> None:
        """The coalescer's pass: write the queue with one non-blocking ``send``; what the
        kernel does not take waits for the flusher."""
        self._marked = False
        if self.broken or self._flushing or self._fd < 0 or not self._queue:
            return
        data = self._take()
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._break()
            return
        self._queued -= sent
        if sent < len(data):
            self._queue.insert(0, data[sent:])
            self._wake()
        else:
            self._signal_drained()

    def _wake(self) -> None:
        if self.start_flusher is not None:
            start, self.start_flusher = self.start_flusher, None
            start(self.flush_loop)
        if self._wake_flusher is not None:
            self._wake_flusher.set()

    async def flush_loop(self) -> None:
        """Drain what the socket refused, in order: the only task that awaits ``send_all``.

        Runs until cancelled or the link breaks; a cancel mid-write breaks the link, since part
        of a frame may be on the wire.
        """
        while not self.broken:
            if not self._queue:  # checked and waited for with no yield between: no lost wake-up
                self._wake_flusher = trio.Event()
                await self._wake_flusher.wait()
                self._wake_flusher = None
            while self._queue and not self.broken:
                data = self._take()
                self._flushing = True
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._break()
                except trio.Cancelled:
                    self._break()
                    raise
                finally:
                    self._flushing = False
                self._queued -= len(data)
            self._signal_drained()

    async def wait_drained(self) -> None:
        """Wait until everything queued was taken by the kernel, or the link broke."""
        while self._queued and not self.broken:
            self._drained = trio.Event()
            await self._drained.wait()
        await trio.lowlevel.checkpoint()

    def release(self) -> None:
        """Write what is queued if the socket takes it at once, then nothing more.

        The stream is about to close, and its descriptor may be reused by the next connection
        before the coalescer's next pass. Never writes while the flusher is inside a frame.
        """
        if not self.broken and not self._flushing:
            self.write_pending()
        self._fd = -1
        self._queue.clear()
        self._break()

    def _take(self) -> bytes:
        """Everything queued, as one string of bytes, removed from the queue."""
        queue = self._queue
        data = queue[0] if len(queue) == 1 else b"".join(queue)
        queue.clear()
        self._unsent_pong = None
        return bytes(data)

    def _signal_drained(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    def _break(self) -> None:
        """Nothing more can be written."""
        if self.broken:
            return
        self.broken = True
        self._signal_drained()
        if self._wake_flusher is not None:
            self._wake_flusher.set()
        self._on_broken()
