"""Shared fixtures: a real server (TCP on loopback, or in memory) and a raw JSON client."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio
import trio_websocket

from actors import Config, Supervisor
from server import Server, serve
from transport import MemoryListener

ROOT = Path(__file__).resolve().parent.parent
TCP_GUARD = 30.0  # seconds of real time
MAX_FRAME = 16 * 1024 * 1024  # bytes: snapshots and state events may exceed the 1 MiB default
MEMORY_GUARD = 6 * 3600.0  # seconds of virtual time: on the autojump clock a hang hits it at once


class RawClient:
    """Speaks the wire protocol frame by frame, keeping events that arrive before a reply.

    With ``pump`` (the default) a background task reads every frame as it arrives, as a real
    client does, so pings are answered even while the test is not reading; without it, frames
    are read only when the test asks (for slow-consumer tests).
    """

    def __init__(
        self, ws: trio_websocket.WebSocketConnection, stream: trio.abc.Stream, guard: float
    ) -> None:
        self.ws = ws
        self.stream = stream
        self.guard = guard  # longest wait for a frame before the test fails instead of hanging
        self.events: list[dict[str, Any]] = []
        self.hello: dict[str, Any] = {}  # the hello reply
        self.seat: dict[str, Any] = {}  # the create/join reply
        self.last_seq = 0  # highest event seq received
        self.close_code: int | None = None
        self._refs = 0
        self._frames: trio.MemoryReceiveChannel[str] | None = None

    async def pump(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        send, self._frames = trio.open_memory_channel[str](100_000)
        task_status.started()
        with send:
            try:
                while True:
                    send.send_nowait(await self.ws.get_message())
            except trio_websocket.ConnectionClosed as closed:
                self.close_code = closed.reason.code

    async def _next_frame(self) -> str:
        if self._frames is None:
            return await self.ws.get_message()
        try:
            return await self._frames.receive()
        except trio.EndOfChannel:
            raise trio_websocket.ConnectionClosed(self.ws.closed) from None

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(orjson.dumps(message).decode())

    async def receive(self) -> dict[str, Any]:
        with trio.fail_after(self.guard):
            message = orjson.loads(await self._next_frame())
        if message["type"] != "reply":
            self.last_seq = max(self.last_seq, message.get("seq", 0))
        return message

    async def drop(self) -> None:
        """Vanish without a close frame, like a pulled cable or a killed tab."""
        await trio.aclose_forcefully(self.stream)

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
        with pytest.raises(trio_websocket.ConnectionClosed) as info, trio.fail_after(self.guard):
            while True:
                await self._next_frame()
        return info.value.reason.code


@attrs.define
class Harness:
    """A running server plus a way to connect clients to it."""

    server: Server
    nursery: trio.Nursery
    listener: MemoryListener | None = None
    pump: bool = True  # clients read continuously, as real ones do

    @property
    def supervisor(self) -> Supervisor:
        return self.server.supervisor

    async def raw(self) -> RawClient:
        """A connected client that has not said hello."""
        if self.listener is None:
            stream = await trio.open_tcp_stream("127.0.0.1", self.server.port)
        else:
            stream = await self.listener.connect()
        ws = await trio_websocket.wrap_client_stream(
            self.nursery, stream, "127.0.0.1", "/ws", max_message_size=MAX_FRAME
        )
        client = RawClient(ws, stream, TCP_GUARD if self.listener is None else MEMORY_GUARD)
        if self.pump:
            await self.nursery.start(client.pump)
        return client

    async def resume(
        self, seat: dict[str, Any], last_seq: int | None, **hello: Any
    ) -> tuple[RawClient, dict[str, Any]]:
        """A new connection that resumes ``seat`` (a create/join reply); returns it and the reply."""
        client = await self.client(**hello)
        reply = await client.ok(
            "session:resume", token=seat["resume_token"], last_seq=last_seq, epoch=seat["epoch"]
        )
        return client, reply

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
            client.last_seq = client.seat["seq"]
            joined.append(client)
        for _ in range(participants):
            await host.event("session:participantJoined")
        for i, client in enumerate(joined):
            for _ in range(participants - 1 - i):
                await client.event("session:participantJoined")
        return host, joined, code


def _config(**overrides: Any) -> Config:
    if overrides.get("rate_limit") == 0:  # a test that floods on purpose: no frame limit either
        overrides.setdefault("frame_rate", 0)
    overrides.setdefault("admin_port", 0)  # a free port: test servers never collide on 8766
    # Every test client comes from one address (loopback, or the in-memory listener): the
    # per-address connection limits are off unless a test sets them (tests/test_security.py).
    overrides.setdefault("connections_per_second", 0)
    overrides.setdefault("max_connections_per_address", 0)
    return Config(**overrides)


async def start_tcp(nursery: trio.Nursery, **overrides: Any) -> Harness:
    config = _config(port=0, **overrides)
    server = await nursery.start(partial(serve, config))
    return Harness(server, nursery)


async def start_memory(
    nursery: trio.Nursery, pair: Any = None, pump: bool = True, **overrides: Any
) -> Harness:
    listener = MemoryListener() if pair is None else MemoryListener(pair)
    server = await nursery.start(partial(serve, _config(**overrides), listeners=[listener]))
    return Harness(server, nursery, listener, pump)


@pytest.fixture
async def tcp(nursery: trio.Nursery) -> Harness:
    """A server on a loopback port with default limits."""
    return await start_tcp(nursery)


@pytest.fixture
async def memory(nursery: trio.Nursery) -> Harness:
    """A server on an in-memory listener. Tests using it also take ``autojump_clock``:
    pytest-trio only runs a test on a clock its own arguments name."""
    return await start_memory(nursery)


class ServerProcess:
    """A ``python server.py`` subprocess: its stderr lines as they come (read by a thread, so
    the pipe never fills), and the URLs it logged."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def expect(self, pattern: str, guard: float = TCP_GUARD) -> re.Match[str]:
        """The first stderr line matching ``pattern``, waiting (at most ``guard`` seconds of
        real time) until the server writes it; fails the test if it never does."""
        deadline = time.monotonic() + guard
        with self._changed:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self._ended or remaining <= 0:
                    pytest.fail(f"the server never logged {pattern!r}:\n{''.join(self.lines)}")
                self._changed.wait(remaining)

    @property
    def url(self) -> str:
        """The WebSocket URL."""
        return self.expect(r"listening on (ws://[^\s\"]+)").group(1)

    @property
    def admin_url(self) -> str:
        """The admin API's base URL (the server runs with ``--admin-port 0`` unless told)."""
        return self.expect(r"admin API on (http://[^\s\"]+)").group(1)

    def stop(self) -> None:
        """Ctrl-C; the server must exit 0 after logging ``stopped``."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=10) == 0
        self._reader.join(timeout=10)
        assert "stopped" in "".join(self.lines)


@contextlib.contextmanager
def running_server(*flags: str) -> Iterator[ServerProcess]:
    """``python server.py`` on free loopback ports (public and admin), once it listens; stopped
    with Ctrl-C afterwards (it must exit cleanly)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "server.py",
            "--port",
            "0",
            "--admin-port",
            "0",
            "--log-level",
            "info",
            "--store",
            "memory",
            *flags,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        server = ServerProcess(process)
        server.expect(r"listening on ws://")
        yield server
        server.stop()
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def server_process(*flags: str) -> Iterator[str]:
    """``python server.py`` on a free loopback port; yields its URL, then stops it with Ctrl-C."""
    with running_server(*flags) as server:
        yield server.url


@pytest.fixture
def server_url() -> Iterator[str]:
    """A ``python server.py`` subprocess with default limits."""
    with server_process() as url:
        yield url
