"""The owned WebSocket layer: framing, the handshake, control frames and the write path.

Checked against another implementation (the ``websockets`` library, run in a thread over real
loopback sockets) and against hand-built frames for what a conforming client never sends.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from transport import Transport, TransportClosed, serve_websocket
from transport._frames import (
    BINARY,
    CLOSE,
    PING,
    TEXT,
    FrameError,
    FrameParser,
    build_frame,
    close_payload,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)

# ------------------------------------------------------------------ framing


@given(
    messages=st.lists(st.binary(max_size=70_000), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=1, max_value=5000), max_size=40),
)
def test_masked_frames_survive_any_split(messages: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(build_frame(BINARY, m, mask=True) for m in messages)
    parser = FrameParser(masked=True, max_size=1 << 20)
    received, pos = [], 0
    for cut in [*cuts, len(wire)]:
        received += parser.feed(wire[pos : pos + cut])
        pos += cut
    assert received == [(BINARY, m) for m in messages]


def test_fragments_are_reassembled_around_a_control_frame() -> None:
    def fragment(opcode: int, payload: bytes, fin: bool) -> bytes:
        frame = bytearray(build_frame(opcode, payload, mask=True))
        if not fin:
            frame[0] &= 0x7F
        return bytes(frame)

    wire = (
        fragment(TEXT, b"hel", False)
        + fragment(PING, b"p", True)
        + fragment(0, b"lo ", False)
        + fragment(0, "wörld".encode(), True)
    )
    parser = FrameParser(masked=True, max_size=100)
    assert parser.feed(wire) == [(PING, b"p"), (TEXT, "hello wörld".encode())]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (build_frame(TEXT, b"x"), 1002),  # unmasked from a client
        (bytes([0xC1, 0x81]) + os.urandom(5), 1002),  # RSV1: nothing was negotiated
        (bytes([0x83, 0x81]) + os.urandom(5), 1002),  # unknown opcode
        (build_frame(PING, b"x" * 126, mask=True), 1002),  # control frame too long
        (build_frame(0, b"x", mask=True), 1002),  # continuation without a start
        (bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 40), 1009),  # refused from the header
    ],
)
def test_protocol_violations_name_their_close_code(wire: bytes, code: int) -> None:
    with pytest.raises(FrameError) as info:
        FrameParser(masked=True, max_size=1000).feed(wire)
    assert info.value.code == code


# ------------------------------------------------------------------ a server to talk to


async def start(
    nursery: trio.Nursery,
    handler: Callable[[Transport], Awaitable[None]],
    send_buffer_size: int = 64 * 1024,
) -> int:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    serve = partial(
        serve_websocket,
        handler,
        listeners,
        max_frame_size=1 << 20,
        send_buffer_size=send_buffer_size,
        http_routes={"/healthz": lambda: ("application/json", b'{"ok":true}')},
    )
    await nursery.start(serve)
    return listeners[0].socket.getsockname()[1]


async def echo(transport: Transport) -> None:
    async def ping() -> None:  # the pong arrives through receive(), so the reader keeps going
        await transport.ping()
        await transport.send("pong received")

    async with trio.open_nursery() as nursery:
        try:
            while True:
                message = await transport.receive()
                if message == "ping me":
                    nursery.start_soon(ping)
                elif message == "close me":
                    await transport.aclose(4000, "as asked")
                    return
                else:
                    reply = message if isinstance(message, str) else f"{len(message)} bytes"
                    await transport.send(reply)
        except TransportClosed:
            await transport.aclose(1000, "")


async def test_websockets_client_round_trips_everything(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo)

    def client() -> dict[str, object]:
        out: dict[str, object] = {}
        with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            out["extensions"] = ws.protocol.extensions  # compression offered, never accepted
            for size in (0, 125, 126, 65_535, 65_536, 300_000):
                ws.send("x" * size)
                out[f"echo {size}"] = ws.recv() == "x" * size
            ws.send(iter(["frag", "mented ", "wörld"]))  # one message in three frames
            out["fragmented"] = ws.recv()
            ws.send(b"\x00" * 10)
            out["binary"] = ws.recv()
            out["client ping"] = ws.ping(b"abc").wait(5)
            ws.send("ping me")  # the server pings; the client answers by itself
            out["server ping"] = ws.recv()
            ws.close(1000, "done")
            out["close"] = (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd_then_sent)
        return out

    out = await trio.to_thread.run_sync(client)
    assert out.pop("extensions") == []
    assert all(out.pop(f"echo {size}") for size in (0, 125, 126, 65_535, 65_536, 300_000))
    assert out == {
        "fragmented": "fragmented wörld",
        "binary": "10 bytes",
        "client ping": True,
        "server ping": "pong received",
        "close": (1000, False),
    }


async def test_server_initiated_close_completes_the_handshake(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo)

    def client() -> tuple[int, str, bool]:
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send("close me")
            with pytest.raises(ConnectionClosed):
                ws.recv()
            received = ws.protocol.close_rcvd
            return received.code, received.reason, ws.protocol.close_rcvd_then_sent

    assert await trio.to_thread.run_sync(client) == (4000, "as asked", True)


class RawLink:
    """A socket after the upgrade, giving back first what arrived with the 101 response."""

    def __init__(self, stream: trio.SocketStream, early: bytes) -> None:
        self.stream = stream
        self.early = early

    async def send_all(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive_some(self, size: int) -> bytes:
        if self.early:
            data, self.early = self.early, b""
            return data
        return await self.stream.receive_some(size)


async def raw_upgrade(port: int) -> RawLink:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    head, _, early = head.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    return RawLink(stream, early)


async def close_frame(stream: RawLink) -> tuple[int, bytes]:
    data = b""
    with trio.fail_after(5):
        while len(data) < 2 or len(data) < 2 + data[1]:
            data += await stream.receive_some(4096)
    assert data[0] == 0x80 | CLOSE
    return struct.unpack("!H", data[2:4])[0], data[4 : 2 + data[1]]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (build_frame(TEXT, b"unmasked"), 1002),
        (build_frame(TEXT, b"\xff\xfe", mask=True), 1007),
        (build_frame(CLOSE, close_payload(1000, "")[:1], mask=True), 1002),
    ],
)
async def test_a_broken_client_gets_the_right_close_code(
    nursery: trio.Nursery, frame: bytes, code: int
) -> None:
    port = await start(nursery, echo)
    stream = await raw_upgrade(port)
    await stream.send_all(frame)
    assert (await close_frame(stream))[0] == code


async def test_frames_sent_with_the_upgrade_request_are_not_lost(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(UPGRADE + build_frame(TEXT, b"early", mask=True))
    data = b""
    with trio.fail_after(5):
        while not data.endswith(b"early"):
            data += await stream.receive_some(4096)


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
        (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),
        (b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"404"),
        (b"NONSENSE\r\n\r\n", b"400"),
    ],
)
async def test_plain_http_gets_a_plain_answer(
    nursery: trio.Nursery, request_head: bytes, status: bytes
) -> None:
    port = await start(nursery, echo)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(request_head)
    response = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(4096):
            response += chunk
    assert response.split(b" ")[1] == status, response


async def test_a_reader_that_stops_gets_its_frames_late_but_in_order(
    nursery: trio.Nursery,
) -> None:
    frames = [json.dumps({"n": n, "pad": "x" * 4000}) for n in range(2000)]  # ~8 MB
    refused = trio.Event()
    most_queued = 0

    async def flood(transport: Transport) -> None:
        nonlocal most_queued
        for frame in frames:
            if not transport.send_nowait(frame):
                refused.set()
                await transport.send(frame)  # waits for the flusher to make room
            most_queued = max(most_queued, transport._queued_size)  # type: ignore[attr-defined]
        await transport.aclose(1000, "")

    port = await start(nursery, flood, send_buffer_size=64 * 1024)
    stream = await raw_upgrade(port)
    with trio.fail_after(10):
        await refused.wait()  # the kernel's buffers and the 64 KiB send buffer are full
    parser = FrameParser(masked=False, max_size=1 << 20)
    received: list[bytes] = []
    with trio.fail_after(30):
        while len(received) < len(frames):
            received += [p for op, p in parser.feed(await stream.receive_some(65536)) if op == TEXT]
    assert [r.decode() for r in received] == frames
    assert most_queued <= 64 * 1024 + len(frames[0]) + 10


async def test_frames_sent_just_before_the_handler_ends_still_go_out(
    nursery: trio.Nursery,
) -> None:
    async def last_words(transport: Transport) -> None:
        transport.send_nowait("last words")  # pending for the coalescer's next pass
        raise RuntimeError("a handler bug")  # logged; the socket closes right away

    port = await start(nursery, last_words)
    stream = await raw_upgrade(port)
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(4096):
            data += chunk
    assert data == build_frame(TEXT, b"last words")
