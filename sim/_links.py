"""A simulated link: two bounded channels carrying frames, no WebSocket framing, with faults.

Frames travel as Python strings on memory channels, so a delivery costs a few scheduler steps
instead of a WebSocket round through wsproto (see docs/simulation.md for the measured cost).
Pings, pongs and close frames are control items on the same channels, in order with the data,
and the client end answers pings by itself as a WebSocket stack does. The server end keeps the
server transport's contract (:class:`transport.Transport`): one ordered queue toward the client
with one byte budget, counting every frame the client has not yet received.
"""

from __future__ import annotations

import contextlib
import math
from typing import Final

import attrs
import trio

from client import LinkClosed
from protocol import ABNORMAL_CLOSURE
from transport import SendBufferFull, TransportClosed

LINK_BUFFER: Final = 64  # frames in flight from the client, like a socket buffer
SEND_BUFFER: Final = 256 * 1024  # bytes toward the client, the server transport's budget
FRAME_OVERHEAD: Final = 2  # bytes counted per frame besides its text, as a WebSocket header

_PING: Final = "\x00ping"  # control items; never valid JSON, so never confused with frames
_PONG: Final = "\x00pong"


@attrs.frozen
class _CloseFrame:
    code: int
    reason: str


_Item = tuple[float, "str | _CloseFrame"]  # (deliver at, payload)


class _Gone(Exception):
    pass


class SimLink:
    """One client connection on the simulated network, with its fault switches.

    ``send_buffer_size`` is the server end's byte budget: text (one byte per character) plus
    ``FRAME_OVERHEAD`` per frame, sent by the server and not yet received by the client. The
    channel toward the client is sized so that the budget, not the channel, is what refuses.
    """

    def __init__(
        self, client_id: str, latency: float = 0.0, send_buffer_size: int = SEND_BUFFER
    ) -> None:
        self.client_id = client_id
        self.latency = latency  # seconds each frame takes, each way
        self.dark_until = -math.inf  # partitioned: nothing arrives until then
        self.stall_until = -math.inf  # the client reads nothing until then
        self.unreceived = 0  # bytes the server sent that the client has not received
        self._up, self._up_out = trio.open_memory_channel[_Item](LINK_BUFFER)  # client -> server
        # within budget, then one frame over it, one ping over it, and the close frame
        most_frames = send_buffer_size // FRAME_OVERHEAD + 3
        self._down, self._down_out = trio.open_memory_channel[_Item](most_frames)
        self.server = ServerEnd(self, send_buffer_size)
        self.client = ClientEnd(self)

    @property
    def dark(self) -> bool:
        return trio.current_time() < self.dark_until

    def _arrival(self) -> float:
        # Like TCP: what is sent during a partition arrives once it heals, if the link lives.
        if not self.latency and self.dark_until == -math.inf:
            return 0.0  # at once; spares reading the clock twice per frame on a plain link
        return max(trio.current_time(), self.dark_until) + self.latency

    async def _send(self, channel: trio.MemorySendChannel[_Item], item: str | _CloseFrame) -> None:
        try:
            await channel.send((self._arrival(), item))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Gone from None

    def _send_close(self, channel: trio.MemorySendChannel[_Item], code: int, reason: str) -> None:
        """Queue a close frame if there is room (no room: the far side sees a reset)."""
        with contextlib.suppress(
            trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
        ):
            channel.send_nowait((self._arrival(), _CloseFrame(code, reason)))
        channel.close()

    async def _receive(self, channel: trio.MemoryReceiveChannel[_Item]) -> str | _CloseFrame:
        try:
            at, item = await channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            raise _Gone from None
        if channel is self._down_out:
            self.unreceived -= frame_size(item)
        if at and at > trio.current_time():
            await trio.sleep_until(at)
        return item

    def drop(self) -> None:
        """Kill the link at once, no close frame (a reset, or a killed process)."""
        for end in (self._up, self._up_out, self._down, self._down_out):
            end.close()


def frame_size(item: str | _CloseFrame) -> int:
    """What a frame toward the client counts against the budget."""
    text = item if isinstance(item, str) else item.reason
    return len(text) + FRAME_OVERHEAD


class _End:
    """What both ends share: sending on the link, with the link's death in the end's terms."""

    def __init__(self, link: SimLink) -> None:
        self._link = link

    def _gone(self) -> Exception:
        raise NotImplementedError

    async def _put(self, channel: trio.MemorySendChannel[_Item], item: str) -> None:
        try:
            await self._link._send(channel, item)
        except _Gone:
            raise self._gone() from None


class ServerEnd(_End):
    """The server's :class:`transport.Transport` on a :class:`SimLink`.

    Same contract as the WebSocket transport: every frame is accepted while the bytes the client
    has not received are within the budget. Past it ``send_nowait`` refuses, and a ping
    overflows the link, so ``ping`` and then ``receive`` raise :class:`SendBufferFull`; the close
    frame is always queued.
    """

    def __init__(self, link: SimLink, budget: int) -> None:
        super().__init__(link)
        self._budget = budget
        self._pong: trio.Event | None = None
        self._closed = False  # our close frame is queued: nothing more is sent
        self._broken = False  # the link was dropped
        self._overflowed = False
        self.remote = f"sim:{link.client_id}"
        self.client_host = f"sim-{link.client_id}"  # each simulated client is its own machine
        self.forwarded_for: str | None = None
        self.heard_at = trio.current_time()

    async def receive(self) -> str:
        while True:
            if self._overflowed:
                await trio.lowlevel.checkpoint()
                raise SendBufferFull
            try:
                item = await self._link._receive(self._link._up_out)
            except _Gone:
                raise TransportClosed from None
            if isinstance(item, _CloseFrame):
                raise TransportClosed
            self.heard_at = trio.current_time()
            if item == _PONG:
                if self._pong is not None:
                    self._pong.set()
                continue
            return item

    def _gone(self) -> Exception:
        return TransportClosed()

    def send_nowait(self, frame: str) -> bool:
        if self._link.unreceived > self._budget or self._overflowed or self._closed:
            return False
        return self._queue(frame)

    @property
    def gone(self) -> bool:
        return self._closed or self._broken

    def _queue(self, item: str | _CloseFrame) -> bool:
        try:
            self._link._down.send_nowait((self._link._arrival(), item))
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._broken = True
            return False
        self._link.unreceived += frame_size(item)
        return True

    def ping_nowait(self) -> bool:
        if self._closed:
            return False
        if self._link.unreceived > self._budget:
            self._overflowed = True
        return not self._overflowed and self._queue(_PING)

    async def ping(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            raise TransportClosed
        if self._link.unreceived > self._budget:
            self._overflowed = True
        if self._overflowed:
            await trio.lowlevel.checkpoint()
            raise SendBufferFull
        self._pong = pong = trio.Event()
        if not self._queue(_PING):
            await trio.lowlevel.checkpoint()
            raise TransportClosed
        await pong.wait()

    async def aclose(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self._queue(_CloseFrame(code, reason))
        self._link._down.close()
        self._link._up_out.close()
        await trio.lowlevel.checkpoint()

    async def abort(self) -> None:
        self._closed = True
        self._link.drop()
        await trio.lowlevel.checkpoint()


class ClientEnd(_End):
    """The client's :class:`client.Link` on a :class:`SimLink`. Answers pings by itself."""

    def _gone(self) -> Exception:
        return LinkClosed(ABNORMAL_CLOSURE)

    async def receive(self) -> str:
        link = self._link
        while True:
            if link.stall_until != -math.inf and link.stall_until > trio.current_time():
                await trio.sleep_until(link.stall_until)
            try:
                item = await link._receive(link._down_out)
            except _Gone:
                if link.dark:  # a reset from the far side arrives when the partition heals
                    await trio.sleep_until(link.dark_until)
                raise LinkClosed(ABNORMAL_CLOSURE) from None
            if isinstance(item, _CloseFrame):
                raise LinkClosed(item.code, item.reason)
            if item == _PING:
                await self._put(link._up, _PONG)
                continue
            return item

    async def send(self, frame: str) -> None:
        await self._put(self._link._up, frame)

    async def aclose(self) -> None:
        self._link._send_close(self._link._up, 1000, "")
        self._link._down_out.close()
        await trio.lowlevel.checkpoint()
