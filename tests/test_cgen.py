"""The C load generator (``bench/cgen``): built with gcc, then a tiny fan-out against a real
``python server.py``, and its WebSocket client side against a hand-written relay that
fragments, pings between fragments, and writes a few bytes at a time."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from functools import partial
from typing import Any

import pytest
import trio

from bench.cgen.build import compiler
from bench.cgen.generator import CLoad, shape_config

from .conftest import running_server

pytestmark = pytest.mark.skipif(
    compiler() is None, reason="no C compiler: gcc (or $CC) is not installed"
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def check_phase(figures: dict[str, Any], expected: int) -> None:
    """Every message delivered once, in order, with latencies that are plausible."""
    assert figures["expected"] == expected, figures
    assert figures["delivered"] == expected, figures
    assert figures["reordered"] == 0, figures
    assert figures["closed"] == 0, figures
    assert 0 < figures["p50"] <= figures["p99"] <= figures["max"] < 2000, figures
    assert figures["cpu"] >= 0 and 0 <= figures["cpu_seconds"] < 30, figures


async def test_a_tiny_fanout_against_the_server() -> None:
    """2 rooms of 3 members: each message reaches the 2 others, in order, once; with frames of
    7-, 16- and 64-bit lengths both ways."""
    with running_server() as server:
        for message_size in (64, 300, 70_000):
            config = shape_config((server.url,), "trio-sessions", 2, 3, message_size=message_size)
            async with CLoad({**config, "settle": 0.05}, cores=None) as load:
                assert load.ready["ready"] == 6 and load.ready["errors"] == 0, load.ready
                figures = await load.phase(rate=20, duration=0.2, drain=0.1)
                assert figures["sent"] >= 12, figures
                check_phase(figures, 2 * figures["sent"])
                if message_size == 64:  # a second phase counts its own messages only
                    second = await load.phase(rate=20, duration=0.1, drain=0.1)
                    check_phase(second, 2 * second["sent"])


class FakeRelay:
    """A relay (the benchmarks' ``relay`` dialect) that makes its client work for it: each
    relayed message goes out in three fragments with a ping between them, a few bytes per
    write; client frames must be masked, with fresh keys; pongs must echo the pings."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[trio.SocketStream]] = {}
        self.masks: set[bytes] = set()
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.lock = trio.Lock()

    async def serve(self, stream: trio.SocketStream) -> None:
        buffer = await self._handshake(stream)
        while True:
            while (frame := self._frame(buffer)) is None:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
            opcode, payload, size = frame
            del buffer[:size]
            if opcode == 0xA:
                self.pongs.append(payload)
            elif opcode == 0x1:
                await self._relay(stream, json.loads(payload))

    async def _handshake(self, stream: trio.SocketStream) -> bytearray:
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(4096)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        headers = dict(
            line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
        )
        key = headers["Sec-WebSocket-Key"]
        assert len(base64.b64decode(key)) == 16 and headers["Sec-WebSocket-Version"] == "13"
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
        )
        return bytearray(rest)

    def _frame(self, buffer: bytearray) -> tuple[int, bytes, int] | None:
        """(opcode, unmasked payload, frame size) of the first whole frame, if there is one."""
        if len(buffer) < 2:
            return None
        assert buffer[0] & 0x80 and buffer[1] & 0x80, "client frames are whole and masked"
        size, head = buffer[1] & 0x7F, 2
        if size == 126:
            size, head = struct.unpack_from("!H", buffer, 2)[0], 4
        elif size == 127:
            size, head = struct.unpack_from("!Q", buffer, 2)[0], 10
        if len(buffer) < head + 4 + size:
            return None
        mask = bytes(buffer[head : head + 4])
        self.masks.add(mask)
        body = buffer[head + 4 : head + 4 + size]
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
        return buffer[0] & 0x0F, payload, head + 4 + size

    async def _relay(self, sender: trio.SocketStream, message: dict[str, Any]) -> None:
        if "join" in message:
            self.rooms.setdefault(message["join"], []).append(sender)
            return
        text = json.dumps(message).encode()
        third = len(text) // 3
        async with self.lock:  # one message at a time on every link
            for member in self.rooms[message["room"]]:
                if member is sender:
                    continue
                ping = os.urandom(4)
                self.pings.append(ping)
                frames = (
                    _frame(0x1, text[:third], fin=False)
                    + _frame(0x9, ping)  # a control frame between fragments
                    + _frame(0x0, text[third : 2 * third], fin=False)
                    + _frame(0x0, text[2 * third :])
                )
                for start in range(0, len(frames), 7):  # a few bytes per write
                    await member.send_all(frames[start : start + 7])
                    await trio.lowlevel.checkpoint()


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        return struct.pack("!BB", first, size) + payload
    if size < 65536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


async def test_fragments_pings_and_split_reads(nursery: trio.Nursery) -> None:
    relay = FakeRelay()
    listeners = await nursery.start(partial(trio.serve_tcp, relay.serve, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    config = shape_config((f"ws://127.0.0.1:{port}/",), "relay", 1, 3, message_size=200)
    async with CLoad({**config, "settle": 0.05}, cores=None) as load:
        assert load.ready["ready"] == 3, load.ready
        figures = await load.phase(rate=10, duration=0.3, drain=0.3)
        check_phase(figures, 2 * figures["sent"])
    assert relay.pings and sorted(relay.pongs) == sorted(relay.pings)
    assert len(relay.masks) > figures["sent"] // 2  # a fresh masking key per frame
