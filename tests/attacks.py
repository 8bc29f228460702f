"""Hostile clients for the soak test (``python -m tests.attacks PORT CODE SECONDS``).

Each attack runs on fresh WebSocket links, spoken by hand, and reconnects whenever the server
throws it out, until the time is up. Loopback only.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import trio

from transport import CONTINUATION, PING, TEXT, build_frame

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def text(payload: str) -> bytes:
    return build_frame(TEXT, payload.encode(), mask=True)


async def raw_link(port: int) -> trio.SocketStream:
    """A WebSocket connection spoken by hand: upgraded, nothing read after the 101."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    return stream


async def until_thrown_out(
    port: int, attack: Callable[[trio.SocketStream], Awaitable[None]]
) -> None:
    """Run ``attack`` on fresh links until cancelled."""
    while True:
        try:
            stream = await raw_link(port)
            async with stream:
                await attack(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        await trio.sleep(0.1)  # pace the reconnects


def attacks(code: str) -> list[Callable[[trio.SocketStream], Awaitable[None]]]:
    async def ping_flood(stream: trio.SocketStream) -> None:
        ping = build_frame(PING, b"p" * 125, mask=True)
        while True:
            await stream.send_all(ping * 50)  # never reads a pong

    async def fragment_flood(stream: trio.SocketStream) -> None:
        await stream.send_all(bytes([0x01, 0x80]) + bytes(4))  # TEXT, not final, empty
        empty = bytes([CONTINUATION, 0x80]) + bytes(4)
        while True:
            await stream.send_all(empty * 500)

    async def junk_flood(stream: trio.SocketStream) -> None:
        await stream.send_all(text('{"type": "hello"}'))
        while True:
            await stream.send_all(text("{not json") * 100)

    async def deep_nesting(stream: trio.SocketStream) -> None:
        await stream.send_all(
            text('{"type": "hello"}') + text(f'{{"type": "session:join", "code": "{code}"}}')
        )
        deep = "[" * 254 + "]" * 254
        while True:
            await stream.send_all(text(f'{{"type": "room:message", "room": "r", "data": {deep}}}'))
            await trio.sleep(0.01)

    async def slow_joiner(stream: trio.SocketStream) -> None:
        hello = text('{"type": "hello"}')
        join = text(f'{{"type": "session:join", "code": "{code}"}}')
        while True:  # each join answers with a 500 KB snapshot it never reads
            await stream.send_all(hello + join + join + join)
            await trio.sleep(0.1)

    async def oversize(stream: trio.SocketStream) -> None:
        await stream.send_all(text('{"type": "hello"}'))
        await stream.send_all(text("x" * 3_000_000))

    return [ping_flood, fragment_flood, junk_flood, deep_nesting, oversize, *[slow_joiner] * 3]


async def main(port: int, code: str, seconds: float) -> None:
    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for attack in attacks(code):
                nursery.start_soon(until_thrown_out, port, attack)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
