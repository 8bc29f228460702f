"""Baseline: a minimal relay on ``websockets`` (asyncio), the fastest plain-Python figure here.

Same protocol as relay_trio_websocket.py; fan-out uses ``websockets.broadcast``, which writes to
each transport synchronously without awaiting. Compression off.

    python bench/baselines/relay_websockets.py PORT
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections import defaultdict

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

rooms: defaultdict[str, set[ServerConnection]] = defaultdict(set)


async def handler(ws: ServerConnection) -> None:
    joined: list[str] = []
    try:
        async for text in ws:
            message = orjson.loads(text)
            if "join" in message:
                rooms[message["join"]].add(ws)
                joined.append(message["join"])
                continue
            broadcast([m for m in rooms[message["room"]] if m is not ws], text)
    except ConnectionClosed:
        pass
    finally:
        for room in joined:
            rooms[room].discard(ws)


async def main(port: int) -> None:
    gc.freeze()
    gc.set_threshold(50_000)
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
