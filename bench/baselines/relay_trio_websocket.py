"""Baseline: the leanest relay on trio-websocket's public API (rooms, each message encoded once).

Protocol: ``{"join": ROOM}`` joins a room; ``{"room": ROOM, "data": ...}`` is relayed as sent
to every other member. One outbox and one writer task per connection, as the API suggests.

    python bench/baselines/relay_trio_websocket.py PORT
"""

from __future__ import annotations

import gc
import sys
from collections import defaultdict

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

OUTBOX = 1024
rooms: defaultdict[str, set[trio.MemorySendChannel[str]]] = defaultdict(set)


async def handler(request: WebSocketRequest) -> None:
    ws = await request.accept()
    send, receive = trio.open_memory_channel[str](OUTBOX)
    joined: list[str] = []

    async def writer() -> None:
        async for frame in receive:
            await ws.send_message(frame)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            while True:
                text = await ws.get_message()
                message = orjson.loads(text)
                if "join" in message:
                    rooms[message["join"]].add(send)
                    joined.append(message["join"])
                    continue
                for member in rooms[message["room"]]:
                    if member is not send:
                        try:  # noqa: SIM105 (cheaper than contextlib.suppress per delivery)
                            member.send_nowait(text)
                        except trio.WouldBlock:
                            pass  # a slow consumer loses messages here
    except ConnectionClosed:
        pass
    finally:
        for room in joined:
            rooms[room].discard(send)


async def main(port: int) -> None:
    gc.freeze()
    gc.set_threshold(50_000)
    await serve_websocket(handler, "127.0.0.1", port, ssl_context=None, message_queue_size=64)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
