"""A bounded soak: hostile clients attack a real server process while an innocent session talks.

The attacks are the ones the hardening work fixed: ping floods that never read, streams of empty
continuation fragments, malformed-JSON floods, deeply nested payloads inside the innocent
session, clients that re-join a session with a large state and never read, and oversize frames.
Each attacker reconnects whenever it is thrown out, until the time is up.

Stated bounds: the innocent session loses nothing; its p99 latency during the attacks stays under
max(50 ms, 3 x its at-rest p99); the server's RSS stays under 300 MB.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import trio

from transport import CONTINUATION, PING, TEXT, build_frame

from .test_persistence import connect, start_server, stop

ATTACK = 8.0  # seconds of attacks
AT_REST = 2.0  # seconds of innocent traffic alone, for its at-rest latency
INTERVAL = 0.025  # seconds between the innocent host's messages
RSS_CEILING = 300 * 1024 * 1024  # bytes
UPGRADE = (
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


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


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


async def until_thrown_out(
    port: int, attack: Callable[[trio.SocketStream], Awaitable[None]]
) -> int:
    """Run ``attack`` on fresh links until the time is up; returns how many links ended."""
    ended = 0
    while True:
        try:
            stream = await raw_link(port)
            async with stream:
                await attack(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        ended += 1
        await trio.sleep(0.05)  # pace the reconnects: this process shares the machine


async def test_attacks_do_not_hurt_an_innocent_session(nursery) -> None:
    process, url = start_server("--store", "memory")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        host = await connect(nursery, url, name="host", token="innocent-host")
        host.seat = await host.ok("session:create", state={"big": "s" * 500_000})
        code = host.seat["code"]
        await host.ok("session:createRoom", room="r")
        students = []
        for i in range(4):
            student = await connect(nursery, url, name=f"s{i}")
            await student.ok("session:join", code=code)
            students.append(student)
        await host.ok("ping")
        host.events.clear()
        for s in students:
            await s.ok("ping")
            s.events.clear()

        latencies: dict[str, list[float]] = {"rest": [], "attack": []}
        sent = 0
        phase = "rest"

        async def innocent_host() -> None:
            nonlocal sent
            while True:
                await host.send(
                    {"type": "room:message", "room": "r", "data": [time.perf_counter(), phase]}
                )
                sent += 1
                await trio.sleep(INTERVAL)

        received = [0] * len(students)

        async def innocent_reader(index: int) -> None:
            student = students[index]
            while True:
                event = await student.event()
                if event["type"] == "room:message" and event["from"] == host.seat["participant_id"]:
                    stamp, when = event["data"]
                    latencies[when].append(time.perf_counter() - stamp)
                    received[index] += 1

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
                await stream.send_all(
                    text(f'{{"type": "room:message", "room": "r", "data": {deep}}}')
                )
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

        async with trio.open_nursery() as traffic:
            traffic.start_soon(innocent_host)
            for index in range(len(students)):
                traffic.start_soon(innocent_reader, index)
            await trio.sleep(AT_REST)
            phase = "attack"
            peak = rss(process.pid)
            async with trio.open_nursery() as attackers:
                for attack in (ping_flood, fragment_flood, junk_flood, deep_nesting, oversize):
                    attackers.start_soon(until_thrown_out, port, attack)
                for _ in range(3):
                    attackers.start_soon(until_thrown_out, port, slow_joiner)
                deadline = trio.current_time() + ATTACK
                while trio.current_time() < deadline:
                    peak = max(peak, rss(process.pid))
                    await trio.sleep(0.1)
                attackers.cancel_scope.cancel()
            await host.request("ping")  # the host's messages so far have all been answered
            expected = sent
            with trio.fail_after(10):
                while min(received) < expected:
                    await trio.sleep(0.05)
            traffic.cancel_scope.cancel()

        assert received == [expected] * len(students), "the innocent session lost messages"
        assert [r["type"] for r in host.events if r["type"] == "reply" and not r["ok"]] == []
        rest_p99 = statistics.quantiles(latencies["rest"], n=100)[98]
        attack_p99 = statistics.quantiles(latencies["attack"], n=100)[98]
        bound = max(0.05, 3 * rest_p99)
        assert attack_p99 <= bound, (
            f"p99 {attack_p99 * 1000:.1f} ms under attack (at rest {rest_p99 * 1000:.1f} ms)"
        )
        assert peak < RSS_CEILING, f"server RSS reached {peak / 2**20:.0f} MB"
        assert orjson.loads(orjson.dumps(host.seat["code"])) == code
        await stop(process)
    finally:
        process.kill()
