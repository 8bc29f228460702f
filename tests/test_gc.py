"""The server leaves no cyclic garbage: what a connection and a session leave behind is freed by
reference counting alone. The command-line server relies on it to freeze ageing objects out of
the cycle collector's reach (``GC_REFREEZE_INTERVAL``) without leaking what later dies."""

from __future__ import annotations

import gc
import re
from collections import Counter
from functools import partial

import trio
import trio.testing

from actors import Config
from server import Server, serve
from transport import TEXT, build_frame

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def frames(*texts: str) -> bytes:
    return b"".join(build_frame(TEXT, text.encode(), mask=True) for text in texts)


async def talk(port: int, replies: int, *texts: str) -> tuple[trio.SocketStream, bytes]:
    """A hand-spoken client (no client library, whose own objects would count too)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(UPGRADE + frames(*texts))
    data = b""
    with trio.fail_after(10):
        while data.count(b'"type":"reply"') < replies:
            data += await stream.receive_some(65536)
    return stream, data


async def session_lifecycle(port: int, i: int) -> None:
    host, data = await talk(
        port,
        3,
        f'{{"type":"hello","ref":1,"token":"host-{i}"}}',
        '{"type":"session:create","ref":2}',
        '{"type":"session:createRoom","ref":3,"room":"r"}',
    )
    code = re.search(rb'"code":"(\w+)"', data).group(1).decode()  # type: ignore[union-attr]
    messages = [
        f'{{"type":"room:message","ref":{10 + k},"room":"r","data":[1,{{"a":2}}]}}'
        for k in range(20)
    ]
    guest, _ = await talk(
        port,
        24,
        '{"type":"hello","ref":1}',
        f'{{"type":"session:join","ref":2,"code":"{code}"}}',
        *messages,
        '{"type":"state:patch","ref":98,"patch":{"a":{"b":1}}}',
        '{"type":"nope","ref":99}',
        "{not json",
    )
    await host.send_all(frames('{"type":"session:close","ref":4}'))
    await guest.aclose()
    await host.aclose()


async def quiet(server: Server) -> None:
    """Until every task waits (the server has ended its side of each link); then nothing is
    open and no session is left."""
    await trio.testing.wait_all_tasks_blocked(cushion=0.1)
    assert server.counters.open == 0 and server.supervisor.codes() == []


async def test_connections_and_sessions_leave_no_cyclic_garbage(nursery) -> None:
    server = await nursery.start(
        partial(serve, Config(port=0, admin_port=-1, rate_limit=0, connections_per_second=0))
    )
    for i in range(5):  # warm up: module-level caches fill once
        await session_lifecycle(server.port, i)
    await quiet(server)
    gc.collect()
    gc.disable()
    try:
        for i in range(50):
            await session_lifecycle(server.port, 100 + i)
        await quiet(server)
        gc.set_debug(gc.DEBUG_SAVEALL)
        found = gc.collect()
        kinds = Counter(type(o).__qualname__ for o in gc.garbage)
        assert found == 0, f"cyclic garbage: {kinds.most_common(10)}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
