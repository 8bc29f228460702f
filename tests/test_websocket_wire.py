"""The owned WebSocket layer: framing, the handshake, control frames and the write path.

Checked against another implementation (the ``websockets`` library, run in a thread over real
loopback sockets) and against hand-built frames for what a conforming client never sends.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from transport import (
    BINARY,
    CLOSE,
    CONTINUATION,
    HANDSHAKE_TIMEOUT,
    MAX_FRAGMENTS,
    MAX_REQUEST_HEAD,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameParser,
    MemoryListener,
    SendBufferFull,
    Transport,
    TransportClosed,
    WebSocketTransport,
    WriteCoalescer,
    build_frame,
    close_payload,
    open_websocket_transport,
    serve_websocket,
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


def demo(path: str) -> tuple[int, str, bytes] | None:
    """A prefix route: serves two files under /demo/, None (404) for anything else."""
    files = {"/demo/": b"<h1>index</h1>", "/demo/app.js": b"go()"}
    return (200, "text/plain", files[path]) if path in files else None


ROUTES = {
    "/healthz": lambda path: (200, "application/json", b'{"ok":true}'),
    "/client.js": lambda path: (200, "text/javascript", b"client()"),
    "/demo/": demo,
}


async def start(
    nursery: trio.Nursery,
    handler: Callable[[Transport], Awaitable[None]],
    send_buffer_size: int = 64 * 1024,
    **limits: float,
) -> int:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    serve = partial(
        serve_websocket,
        handler,
        listeners,
        max_frame_size=1 << 20,
        send_buffer_size=send_buffer_size,
        http_routes=ROUTES,
        **limits,
    )
    await nursery.start(serve)
    return listeners[0].socket.getsockname()[1]


async def echo(transport: Transport) -> None:
    async def ping() -> None:  # the pong arrives through receive(), so the reader keeps going
        await transport.ping()
        assert transport.send_nowait("pong received")

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
                    assert transport.send_nowait(reply)
        except TransportClosed:
            await transport.aclose(1000, "")


async def test_websockets_client_round_trips_everything(nursery: trio.Nursery) -> None:
    # A budget above the largest echo: the queue counts a written frame until the flusher task
    # runs again after its send_all, which may be after the client has read it and sent on.
    port = await start(nursery, echo, send_buffer_size=1 << 20)

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


async def http(port: int, request_head: bytes) -> bytes:
    """Send ``request_head``; the whole response, read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(request_head)
    response = b""
    with trio.fail_after(5), contextlib.suppress(trio.BrokenResourceError):  # reset: unread data
        while chunk := await stream.receive_some(4096):
            response += chunk
    return response


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
    response = await http(port, request_head)
    assert response.split(b" ")[1] == status, response


async def fill_until_refused(transport: Transport, frame: str) -> int:
    """Send ``frame`` until the transport refuses one even after its writers had a turn (the
    kernel's buffers and the send budget are full); returns how many were accepted."""
    accepted = 0
    while transport.send_nowait(frame):
        accepted += 1
        await (
            trio.lowlevel.checkpoint()
        )  # the coalescer and the flusher write what the kernel takes
    return accepted


async def read_frames(stream: RawLink, until: int = CLOSE) -> list[tuple[int, bytes]]:
    """Server frames up to and including the first one with opcode ``until``."""
    parser = FrameParser(masked=False, max_size=1 << 20)
    frames: list[tuple[int, bytes]] = []
    with trio.fail_after(30):
        while not frames or frames[-1][0] != until:
            frames += parser.feed(await stream.receive_some(65536))
    return frames


async def test_a_reader_that_stops_gets_its_frames_late_but_in_order(
    nursery: trio.Nursery,
) -> None:
    frame = json.dumps({"pad": "x" * 4000})
    accepted = -1
    most_queued = 0

    async def flood(transport: Transport) -> None:
        nonlocal accepted, most_queued
        assert isinstance(transport, WebSocketTransport)
        accepted = await fill_until_refused(transport, frame)
        most_queued = transport.statistics().queued
        await transport.aclose(1000, "")

    port = await start(nursery, flood, send_buffer_size=64 * 1024)
    stream = await raw_upgrade(port)
    await trio.testing.wait_all_tasks_blocked()  # the handler waits for the reader
    frames = await read_frames(stream)
    assert accepted > 0
    assert frames == [(TEXT, frame.encode())] * accepted + [(CLOSE, close_payload(1000, ""))]
    assert 64 * 1024 < most_queued <= 64 * 1024 + len(frame) + 4  # budget plus one frame


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


# ------------------------------------------------------------------ the transport's context manager


async def test_the_transport_releases_its_socket_when_the_body_raises() -> None:
    client_socket, server_socket = trio.socket.socketpair()
    client, server = trio.SocketStream(client_socket), trio.SocketStream(server_socket)
    async with trio.open_nursery() as nursery:
        coalescer = WriteCoalescer()
        nursery.start_soon(coalescer.run)
        with pytest.raises(RuntimeError, match=r"^a handler bug$"):  # itself, not in a group
            async with open_websocket_transport(
                server, coalescer, max_message_size=1000, send_buffer_size=1000
            ) as transport:
                assert transport.send_nowait("last words")  # queued for the coalescer
                raise RuntimeError("a handler bug")
        assert server_socket.fileno() == -1  # closed
        assert not transport.send_nowait("too late")
        data = b""
        with trio.fail_after(5):
            while chunk := await client.receive_some(4096):
                data += chunk
        assert data == build_frame(TEXT, b"last words")
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ floods (issue 10)


def masked(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    frame = bytearray(build_frame(opcode, payload, mask=True))
    if not fin:
        frame[0] &= 0x7F
    return bytes(frame)


async def test_pongs_to_a_client_that_never_reads_are_coalesced(autojump_clock: object) -> None:
    client, server = trio.testing.lockstep_stream_pair()  # nothing buffered: the first pong blocks
    most_queued = 0
    async with (
        open_websocket_transport(
            server, WriteCoalescer(), max_message_size=1000, send_buffer_size=1000
        ) as transport,
        trio.open_nursery() as nursery,
    ):

        async def read() -> None:
            with pytest.raises(TransportClosed):
                await transport.receive()

        nursery.start_soon(read)
        for n in range(1500):  # within the frame burst; each 127 bytes, ten times the budget
            await client.send_all(masked(PING, n.to_bytes(2, "big") * 62 + b"!"))
            most_queued = max(most_queued, transport.statistics().queued)
        assert not transport.statistics().overflowed
        await client.aclose()
    assert most_queued <= 2 * 127  # the one being written, and the newest unsent


async def test_a_pong_over_the_budget_ends_in_4008(nursery: trio.Nursery) -> None:
    frame = "x" * 8000
    budget = 16 * 1024
    outcome: list[object] = []

    async def slow_consumer(transport: Transport) -> None:
        assert isinstance(transport, WebSocketTransport)
        await fill_until_refused(transport, frame)
        try:
            while True:
                await transport.receive()
        except SendBufferFull:
            outcome.append(transport.statistics())
            assert not transport.send_nowait("more")
            await transport.aclose(4008, "slow consumer")

    port = await start(nursery, slow_consumer, send_buffer_size=budget)
    stream = await raw_upgrade(port)
    await trio.testing.wait_all_tasks_blocked()  # the handler filled the budget
    await stream.send_all(b"".join(masked(PING, b"p" * 125) for _ in range(1000)))
    frames = await read_frames(stream)
    assert frames[-1] == (CLOSE, close_payload(4008, "slow consumer"))
    assert {opcode for opcode, _ in frames[:-1]} == {TEXT}  # no pong went over the budget
    [statistics] = outcome
    assert statistics.overflowed  # type: ignore[attr-defined]
    assert statistics.queued <= budget + len(frame) + 4  # type: ignore[attr-defined]


async def test_empty_continuation_frames_end_at_the_fragment_limit(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo, max_frame_rate=1e9, frame_burst=10**9)
    stream = await raw_upgrade(port)
    flood = masked(TEXT, b"a", fin=False) + masked(CONTINUATION, fin=False) * 100_000
    with contextlib.suppress(trio.BrokenResourceError):  # the server may close mid-flood
        await stream.send_all(flood)
    code, reason = await close_frame(stream)
    assert (code, reason) == (1009, f"message in over {MAX_FRAGMENTS} fragments".encode())


def test_the_parser_holds_at_most_max_fragments() -> None:
    parser = FrameParser(masked=True, max_size=1 << 20, max_fragments=10)
    assert parser.feed(masked(TEXT, b"a", fin=False) + masked(CONTINUATION, fin=False) * 9) == []
    with pytest.raises(FrameError, match=r"^message in over 10 fragments$") as info:
        parser.feed(masked(CONTINUATION, b"b")[:2])  # refused from the header
    assert info.value.code == 1009


async def test_a_ping_flood_is_closed_for_its_frame_rate(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo)  # default rate and burst
    stream = await raw_upgrade(port)
    with contextlib.suppress(trio.BrokenResourceError):
        await stream.send_all(masked(PING) * 10_000)  # 60 kB: far over the burst, at once
    frames = await read_frames(stream)
    assert frames[-1] == (CLOSE, close_payload(1008, "too many frames per second"))
    assert all(opcode == PONG for opcode, _ in frames[:-1])


async def test_the_frame_rate_refills_on_trios_clock(autojump_clock: object) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with open_websocket_transport(
        server,
        WriteCoalescer(),
        max_message_size=1000,
        send_buffer_size=1 << 20,
        max_frame_rate=100,
        frame_burst=200,
    ) as transport:
        await client.send_all(masked(TEXT, b"x") * 200)  # the whole burst
        for _ in range(200):
            assert await transport.receive() == "x"
        await trio.sleep(1)  # 100 more tokens
        await client.send_all(masked(TEXT, b"y") * 100)
        for _ in range(100):
            assert await transport.receive() == "y"
        await client.send_all(masked(TEXT, b"z"))  # one too many
        with pytest.raises(TransportClosed):
            await transport.receive()
        await transport.aclose(1000, "")  # writes the close frame already queued: 1008
    parser = FrameParser(masked=False, max_size=1000)
    frames = parser.feed(await client.receive_some())
    assert frames == [(CLOSE, close_payload(1008, "too many frames per second"))]


async def test_a_burst_of_messages_yields_to_the_scheduler() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with open_websocket_transport(
        server, WriteCoalescer(), max_message_size=1000, send_buffer_size=1000
    ) as transport:
        await client.send_all(masked(TEXT, b"m") * 1000)  # one read
        with trio.testing.assert_checkpoints():
            for _ in range(64):
                await transport.receive()


# ------------------------------------------------------------------ parser cost


def test_the_parser_is_linear_in_the_bytes_fed() -> None:
    def seconds_to_parse(size: int) -> float:
        wire = masked(BINARY, bytes(size))
        best = float("inf")
        for _ in range(5):
            parser = FrameParser(masked=True, max_size=1 << 25)
            # CPU time of this process: other processes on the machine do not inflate it
            started = time.process_time()
            for start in range(0, len(wire), 4096):
                parser.feed(wire[start : start + 4096])
            best = min(best, time.process_time() - started)
        return best

    small, large = seconds_to_parse(2 << 20), seconds_to_parse(16 << 20)
    # 8 times the bytes: linear is ~8; re-joining the buffer on every read was ~64 (quadratic).
    # The margin is 4x: a busy machine stretches both runs, not their ratio.
    assert large / small < 32


# ------------------------------------------------------------------ HTTP details (issue 10.7)


def status_of(response: bytes) -> bytes:
    return response.split(b" ")[1]


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        (b"/healthz", b"200", b'{"ok":true}'),
        (b"/client.js", b"200", b"client()"),
        (b"/demo/", b"200", b"<h1>index</h1>"),
        (b"/demo/app.js?v=2", b"200", b"go()"),
        (b"/demo/missing.js", b"404", b"the WebSocket endpoint is /ws"),
        (b"/demo", b"404", b"the WebSocket endpoint is /ws"),
        (b"/client.js/x", b"404", b"the WebSocket endpoint is /ws"),
    ],
)
async def test_routes_match_exact_paths_and_prefixes(
    nursery: trio.Nursery, path: bytes, status: bytes, body: bytes
) -> None:
    port = await start(nursery, echo)
    response = await http(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(response) == status
    assert response.partition(b"\r\n\r\n")[2] == body


@pytest.mark.parametrize(("path", "status"), [(b"/healthz", b"200"), (b"/ws", b"426")])
async def test_head_gets_the_status_of_get_without_a_body(
    nursery: trio.Nursery, path: bytes, status: bytes
) -> None:
    port = await start(nursery, echo)
    response = await http(port, b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert (status_of(head), body) == (status, b"")


def padded_head(size: int) -> bytes:
    """A GET /healthz whose head is exactly ``size`` bytes, blank line included."""
    start, end = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


async def test_a_request_head_may_be_16_kib_and_no_more(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo)
    assert status_of(await http(port, padded_head(MAX_REQUEST_HEAD))) == b"200"
    assert await http(port, padded_head(MAX_REQUEST_HEAD + 1)) == b""  # dropped, as documented
    assert await http(port, padded_head(32 * 1024 - 100)) == b""


def upgrade_with(*lines: bytes, version: bytes = b"1.1") -> bytes:
    return (
        b"GET /ws HTTP/"
        + version
        + b"\r\nHost: x\r\n"
        + b"".join(line + b"\r\n" for line in lines)
        + b"\r\n"
    )


GOOD = (b"Upgrade: websocket", b"Connection: Upgrade", b"Sec-WebSocket-Version: 13")


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (upgrade_with(*GOOD, b"Sec-WebSocket-Key: " + KEY), b"101"),
        (upgrade_with(*GOOD, b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"), b"400"),  # 15 bytes
        (upgrade_with(*GOOD, b"Sec-WebSocket-Key: not base64 at all!"), b"400"),
        (upgrade_with(*GOOD), b"400"),  # no key
        (upgrade_with(*GOOD, b"Sec-WebSocket-Key: " + KEY, b"Sec-WebSocket-Key: " + KEY), b"400"),
        (upgrade_with(*GOOD, b"Sec-WebSocket-Key: " + KEY, version=b"1.0"), b"505"),
        (UPGRADE.replace(b"GET", b"POST"), b"400"),
    ],
)
async def test_upgrades_are_checked_as_rfc_6455_asks(
    nursery: trio.Nursery, request_head: bytes, status: bytes
) -> None:
    port = await start(nursery, echo)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(request_head)
    with trio.fail_after(5):
        response = await stream.receive_some(4096)
    assert status_of(response) == status, response
    await stream.aclose()


@pytest.mark.parametrize(
    "request_head",
    [UPGRADE.replace(b"Version: 13", b"Version: 12"), b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"],
)
async def test_426_names_the_version_it_speaks(nursery: trio.Nursery, request_head: bytes) -> None:
    port = await start(nursery, echo)
    response = await http(port, request_head)
    assert status_of(response) == b"426"
    assert b"\r\nsec-websocket-version: 13\r\n" in response.lower()


async def test_a_request_head_that_never_comes_is_dropped(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    listener = MemoryListener()
    serve = partial(serve_websocket, echo, [listener], max_frame_size=1000, send_buffer_size=1000)
    await nursery.start(serve)
    client = await listener.connect()
    started = trio.current_time()
    await client.send_all(UPGRADE[:20])
    assert await client.receive_some() == b""
    assert trio.current_time() - started == HANDSHAKE_TIMEOUT
    second = await listener.connect()
    await second.send_all(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await second.receive_some()).startswith(b"HTTP/1.1 404 ")  # the server goes on
