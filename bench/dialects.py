"""Load-client dialects for the baseline servers, so one load generator drives them all."""

from __future__ import annotations

from collections import Counter

import orjson

from load import Group, Link, RequestFailed, Seat


class Relay:
    """The plain relays (baselines/relay_*.py): join a room, send JSON, get it back as sent."""

    name = "relay"
    supports_resume = False

    async def join(self, link: Link, group: Group, member: int, seat: Seat) -> None:
        for room in range(group.rooms):
            await link.send(orjson.dumps({"join": f"g{group.index}r{room}"}).decode())

    async def resume(self, link: Link, seat: Seat) -> bool:
        raise RequestFailed("unsupported")

    def message(self, group: int, room: int, data: str) -> str:
        return orjson.dumps({"room": f"g{group}r{room}", "data": data}).decode()

    def patch(self, counter: int) -> str | None:
        return None

    def deliveries(self, frames: list[str], seat: Seat, errors: Counter[str]) -> list[str]:
        return [orjson.loads(frame)["data"] for frame in frames]


class SocketIO:
    """Socket.IO v5 over Engine.IO v4, WebSocket transport only."""

    name = "socket.io"
    supports_resume = False

    async def join(self, link: Link, group: Group, member: int, seat: Seat) -> None:
        opened = await link.receive_batch()  # '0{"sid":...}'
        if not opened[0].startswith("0"):
            raise RequestFailed("no engine.io open packet")
        await link.send("40")
        while not any(frame.startswith("40") for frame in await link.receive_batch()):
            pass
        for room in range(group.rooms):
            await link.send(f"421{orjson.dumps(['join', f'g{group.index}r{room}']).decode()}")
            while not any(frame.startswith("431") for frame in await link.receive_batch()):
                pass

    async def resume(self, link: Link, seat: Seat) -> bool:
        raise RequestFailed("unsupported")

    def message(self, group: int, room: int, data: str) -> str:
        return "42" + orjson.dumps(["msg", {"room": f"g{group}r{room}", "data": data}]).decode()

    def patch(self, counter: int) -> str | None:
        return None

    def deliveries(self, frames: list[str], seat: Seat, errors: Counter[str]) -> list[str]:
        return [orjson.loads(f[2:])[1]["data"] for f in frames if f.startswith('42["msg"')]
