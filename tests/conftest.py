"""Shared fixtures: a real server (TCP on loopback, or in memory) and a raw JSON client."""

from __future__ import annotations

from functools import partial
from typing import Any

import attrs
import orjson
import pytest
import trio
import trio_websocket

from actors import Config, Supervisor
from server import Server, serve
from transport import MemoryListener


class RawClient:
    """Speaks the wire protocol frame by frame, keeping events that arrive before a reply."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.hello: dict[str, Any] = {}  # the hello reply
        self.seat: dict[str, Any] = {}  # the create/join reply
        self._refs = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(orjson.dumps(message).decode())

    async def receive(self) -> dict[str, Any]:
        return orjson.loads(await self.ws.get_message())

    async def request(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Send a request with a fresh ref; return its reply (events meanwhile are kept)."""
        self._refs += 1
        ref = f"r{self._refs}"
        await self.send({"type": kind, "ref": ref, **fields})
        while True:
            message = await self.receive()
            if message["type"] == "reply" and message["ref"] == ref:
                return message
            self.events.append(message)

    async def ok(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        reply = await self.request(kind, **fields)
        assert reply["ok"], reply
        return reply["data"]

    async def error(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        reply = await self.request(kind, **fields)
        assert not reply["ok"], reply
        return reply["error"]

    async def event(self, kind: str | None = None) -> dict[str, Any]:
        """The next event (kept or new); checks its type when ``kind`` is given."""
        message = self.events.pop(0) if self.events else await self.receive()
        if kind is not None:
            assert message["type"] == kind, message
        return message

    async def closed(self) -> int:
        """Wait for the server to close the connection; returns the close code."""
        with pytest.raises(trio_websocket.ConnectionClosed) as info:
            while True:
                await self.ws.get_message()
        return info.value.reason.code


@attrs.define
class Harness:
    """A running server plus a way to connect clients to it."""

    server: Server
    nursery: trio.Nursery
    listener: MemoryListener | None = None

    @property
    def supervisor(self) -> Supervisor:
        return self.server.supervisor

    async def raw(self) -> RawClient:
        """A connected client that has not said hello."""
        if self.listener is None:
            url = f"ws://127.0.0.1:{self.server.port}/ws"
            ws = await trio_websocket.connect_websocket_url(self.nursery, url)
        else:
            stream = await self.listener.connect()
            ws = await trio_websocket.wrap_client_stream(self.nursery, stream, "sim", "/ws")
        return RawClient(ws)

    async def client(self, name: str | None = None, token: str | None = None) -> RawClient:
        """A connected client after hello."""
        client = await self.raw()
        hello = {k: v for k, v in {"name": name, "token": token}.items() if v is not None}
        client.hello = await client.ok("hello", **hello)
        return client

    async def session(self, participants: int = 1) -> tuple[RawClient, list[RawClient], str]:
        """A host with a fresh session and ``participants`` joined clients (events drained)."""
        host = await self.client("host")
        host.seat = await host.ok("session:create")
        code = host.seat["code"]
        joined = []
        for i in range(participants):
            client = await self.client(f"p{i}")
            client.seat = await client.ok("session:join", code=code)
            joined.append(client)
        for _ in range(participants):
            await host.event("session:participantJoined")
        for i, client in enumerate(joined):
            for _ in range(participants - 1 - i):
                await client.event("session:participantJoined")
        return host, joined, code


async def start_tcp(nursery: trio.Nursery, **overrides: Any) -> Harness:
    config = Config(port=0, **overrides)
    server = await nursery.start(partial(serve, config))
    return Harness(server, nursery)


async def start_memory(nursery: trio.Nursery, pair: Any = None, **overrides: Any) -> Harness:
    listener = MemoryListener() if pair is None else MemoryListener(pair)
    server = await nursery.start(partial(serve, Config(**overrides), listeners=[listener]))
    return Harness(server, nursery, listener)


@pytest.fixture
async def tcp(nursery: trio.Nursery) -> Harness:
    """A server on a loopback port with default limits."""
    return await start_tcp(nursery)


@pytest.fixture
async def memory(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> Harness:
    """A server on an in-memory listener, under the autojump clock."""
    return await start_memory(nursery)
