"""A simulated link: two bounded channels carrying frames, no WebSocket framing, with faults.

Frames travel as Python strings on memory channels, so a delivery costs a few scheduler steps
instead of a WebSocket round through wsproto (see docs/simulation.md for the measured cost).
Pings, pongs and close frames are control items on the same channels, in order with the data,
and the client end answers pings by itself as a WebSocket stack does.
"""

from __future__ import annotations

import contextlib
import math
from typing import Final

import attrs
import trio

from client import LinkClosed
from transport import TransportClosed

LINK_BUFFER: Final = 64  # frames in flight per direction, like a socket buffer
ABNORMAL_CLOSURE: Final = 1006

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
    """One client connection on the simulated network, with its fault switches."""

    def __init__(self, client_id: str, latency: float = 0.0) -> None:
        self.client_id = client_id
        self.latency = latency  # seconds each frame takes, each way
        self.dark_until = -math.inf  # partitioned: nothing arrives until then
        self.stall_until = -math.inf  # the client reads nothing until then
        self._up, self._up_out = trio.open_memory_channel[_Item](LINK_BUFFER)  # client -> server
        self._down, self._down_out = trio.open_memory_channel[_Item](LINK_BUFFER)
        self.server = ServerEnd(self)
        self.client = ClientEnd(self)

    @property
    def dark(self) -> bool:
        return trio.current_time() < self.dark_until

    def _arrival(self) -> float:
        # Like TCP: what is sent during a partition arrives once it heals, if the link lives.
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
        if at > trio.current_time():
            await trio.sleep_until(at)
        return item

    def drop(self) -> None:
        """Kill the link at once, no close frame (a reset, or a killed process)."""
        for end in (self._up, self._up_out, self._down, self._down_out):
            end.close()


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
    """The server's :class:`transport.Transport` on a :class:`SimLink`."""

    def __init__(self, link: SimLink) -> None:
        super().__init__(link)
        self._pong: trio.Event | None = None
        self.remote = f"sim:{link.client_id}"

    async def receive(self) -> str:
        while True:
            try:
                item = await self._link._receive(self._link._up_out)
            except _Gone:
                raise TransportClosed from None
            if isinstance(item, _CloseFrame):
                raise TransportClosed
            if item == _PONG:
                if self._pong is not None:
                    self._pong.set()
                continue
            return item

    def _gone(self) -> Exception:
        return TransportClosed()

    async def send(self, frame: str) -> None:
        await self._put(self._link._down, frame)

    def send_nowait(self, frame: str) -> bool:
        try:
            self._link._down.send_nowait((self._link._arrival(), frame))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def ping(self) -> None:
        self._pong = pong = trio.Event()
        await self.send(_PING)
        await pong.wait()

    async def aclose(self, code: int, reason: str) -> None:
        self._link._send_close(self._link._down, code, reason)
        self._link._up_out.close()
        await trio.lowlevel.checkpoint()

    async def abort(self) -> None:
        self._link.drop()
        await trio.lowlevel.checkpoint()


class ClientEnd(_End):
    """The client's :class:`client.Link` on a :class:`SimLink`. Answers pings by itself."""

    def _gone(self) -> Exception:
        return LinkClosed(ABNORMAL_CLOSURE)

    async def receive(self) -> str:
        link = self._link
        while True:
            if link.stall_until > trio.current_time():
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
