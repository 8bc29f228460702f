"""Sessions outlive the process: real server processes on a real SQLite file, restarted with
SIGINT/SIGTERM (graceful) and SIGKILL (a crash), and clients that resume afterwards."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from typing import Any

import pytest
import trio
import trio_websocket

from actors import Config, Environment
from server import Server, serve

from .conftest import MAX_FRAME, ROOT, TCP_GUARD, RawClient

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def connect(nursery: trio.Nursery, url: str, **hello: Any) -> RawClient:
    host, port = re.match(r"ws://([^:]+):(\d+)/ws", url).groups()  # type: ignore[union-attr]
    stream = await trio.open_tcp_stream(host, int(port))
    ws = await trio_websocket.wrap_client_stream(
        nursery, stream, host, "/ws", max_message_size=MAX_FRAME
    )
    client = RawClient(ws, stream, TCP_GUARD)
    await nursery.start(client.pump)
    client.hello = await client.ok("hello", **hello)
    return client


async def resume(
    nursery: trio.Nursery, url: str, client: RawClient, **hello: Any
) -> tuple[RawClient, dict[str, Any]]:
    again = await connect(nursery, url, **hello)
    reply = await again.ok(
        "session:resume",
        token=client.seat["resume_token"],
        last_seq=client.last_seq,
        epoch=client.seat["epoch"],
    )
    return again, reply


async def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    """Signal the server and wait for it without blocking the clients' tasks; its log."""
    process.send_signal(sig)
    status = await trio.to_thread.run_sync(partial(process.wait, timeout=20))
    log = "".join(process.log)  # type: ignore[attr-defined]
    assert status == 0, log
    return log


async def test_a_graceful_restart_loses_nothing(nursery, tmp_path) -> None:
    store = f"sqlite:{tmp_path / 'sessions.db'}"
    process, url = start_server("--store", store)
    try:
        host = await connect(nursery, url, name="host", token="host-1")
        host.seat = await host.ok("session:create", state={"round": 1}, meta={"class": "7b"})
        code = host.seat["code"]
        await host.ok("session:createRoom", room="poll", kind="poll")
        students = []
        for i in range(3):
            student = await connect(nursery, url, name=f"s{i}", token=f"student-{i}")
            student.seat = await student.ok("session:join", code=code)
            student.last_seq = student.seat["seq"]
            students.append(student)
        for i, student in enumerate(students):
            reply = await student.ok("room:message", room="poll", data={"answer": i})
            student.last_seq = max(student.last_seq, reply["seq"])
        await host.ok("state:patch", patch={"round": 2, "answers": 3})
        for client in (host, *students):
            await client.ok("ping")  # everything sent so far has arrived
            client.last_seq = max([client.last_seq, *(e.get("seq", 0) for e in client.events)])
        seen = {id(c): {e["seq"] for e in c.events if "seq" in e} for c in (host, *students)}
        assert "stopped" in await stop(process)
    finally:
        process.kill()
    for client in (host, *students):
        assert await client.closed() == 1012

    process, url = start_server("--store", store)
    try:
        _host, reply = await resume(nursery, url, host, token="host-1")
        assert reply["recovered"] is True and reply["state"] == {"round": 2, "answers": 3}
        assert reply["version"] == 1 and reply["role"] == "host"
        for i, student in enumerate(students):
            back, resumed = await resume(nursery, url, student, token=f"student-{i}")
            assert (
                resumed["recovered"] is True
                and resumed["participant_id"] == student.seat["participant_id"]
            )
            await back.ok("ping")
            replayed = [e["seq"] for e in back.events if "seq" in e]
            assert len(replayed) == resumed["replayed"]
            assert replayed == list(
                range(student.last_seq + 1, student.last_seq + 1 + len(replayed))
            )
            assert not seen[id(student)] & set(replayed)  # nothing twice
        late = await connect(nursery, url, name="late")
        snapshot = await late.ok("session:join", code=code)
        assert snapshot["meta"] == {"class": "7b"}
        assert [r["name"] for r in snapshot["rooms"]] == ["poll"]
        assert sorted(p["name"] for p in snapshot["participants"]) == [
            "host",
            "late",
            "s0",
            "s1",
            "s2",
        ]
        await stop(process, signal.SIGINT)
    finally:
        process.kill()


def start_server(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """``python server.py`` on a free port; its log is drained by a thread (a full pipe would
    stop the server) and kept in ``process.log``."""
    process = subprocess.Popen(
        [
            sys.executable,
            "server.py",
            "--port",
            "0",
            "--admin-port",
            "-1",
            "--log-level",
            "info",
            *flags,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if match := re.search(r"listening on (ws://\S+)", line):
            log: list[str] = []
            threading.Thread(target=log.extend, args=(process.stderr,), daemon=True).start()
            process.log = log  # type: ignore[attr-defined]
            return process, match.group(1)
    pytest.fail("the server did not start")


@pytest.mark.parametrize("durability", ["strict", "default"])
async def test_sigkill_during_patches_loses_at_most_the_window(
    nursery, tmp_path, durability
) -> None:
    store = f"sqlite:{tmp_path / 'sessions.db'}"
    process, url = start_server("--store", store, "--durability", durability, "--rate-limit", "0")
    try:
        host = await connect(nursery, url, token="host-1")
        host.seat = await host.ok("session:create")
        # Committed before anything else, so that the session itself is never in the window
        # (300 round trips on loopback may all fit in one write-behind interval).
        await host.ok("state:set", state={"n": 0}, durable=True)
        acked: list[float] = []  # when each version was acknowledged (version i+2 at i)
        for i in range(300):
            await host.ok("state:patch", patch={"n": i + 1})
            acked.append(time.monotonic())
        process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        process.wait(timeout=10)
    finally:
        process.kill()
    process, url = start_server("--store", store)
    try:
        back = await connect(nursery, url, token="host-1")
        reply = await back.ok(
            "session:resume", token=host.seat["resume_token"], last_seq=0, epoch=host.seat["epoch"]
        )
        version = reply["version"]
        assert version >= 1
        assert reply["state"] == {"n": version - 1}
        assert reply["epoch"] != host.seat["epoch"]  # after a crash: a new epoch, a snapshot
        assert reply["recovered"] is False
        if durability == "strict":
            assert version == 301  # every acknowledged patch is there
        else:
            lost = 301 - version
            # the first lost version, version + 1, was acknowledged at acked[version - 1]
            assert lost == 0 or killed - acked[version - 1] <= 0.1 + 0.25  # window + slack
        await stop(process)
    finally:
        process.kill()


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"this is not a database at all" * 100, "not a database"), (None, "directory")],
)
def test_a_broken_store_file_stops_the_start_naming_it(tmp_path, content, why) -> None:
    path = tmp_path / "sessions.db"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    result = subprocess.run(
        [
            sys.executable,
            "server.py",
            "--port",
            "0",
            "--admin-port",
            "-1",
            "--store",
            f"sqlite:{path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"cannot open the session store {path}" in result.stderr
    assert "listening" not in result.stderr


class Wall:
    """A display clock the test moves (the store decides expiry on wall time)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def run_server(nursery: trio.Nursery, config: Config, wall: Wall) -> Server:
    env = Environment(Environment.production().rng, wall)
    return await nursery.start(partial(serve, config, env=env))


async def test_a_host_away_longer_than_its_grace_finds_the_session_closed(tmp_path) -> None:
    config = Config(port=0, admin_port=-1, store=f"sqlite:{tmp_path / 's.db'}", host_grace=600)
    wall = Wall()
    async with trio.open_nursery() as nursery:
        server = await run_server(nursery, config, wall)
        url = f"ws://127.0.0.1:{server.port}/ws"
        host = await connect(nursery, url, token="h")
        host.seat = await host.ok("session:create")
        other = await connect(nursery, url, token="h2")
        other.seat = await other.ok("session:create")
        server.shutdown()
    wall.now += 300  # within the grace
    async with trio.open_nursery() as nursery:
        server = await run_server(nursery, config, wall)
        url = f"ws://127.0.0.1:{server.port}/ws"
        assert sorted(server.supervisor.codes()) == sorted([host.seat["code"], other.seat["code"]])
        _back, reply = await resume(nursery, url, host, token="h")
        assert reply["recovered"] is True and reply["status"] == "active"
        server.shutdown()
    wall.now += 601  # both hosts' graces (from the last stop) ran out while the server was down
    async with trio.open_nursery() as nursery:
        server = await run_server(nursery, config, wall)
        url = f"ws://127.0.0.1:{server.port}/ws"
        assert server.supervisor.codes() == []
        late = await connect(nursery, url, token="h2")
        error = await late.error(
            "session:resume", token=other.seat["resume_token"], last_seq=0, epoch="x"
        )
        assert error["code"] == "session_closed"
        await server.store.commit()
        for seat in (host.seat, other.seat):
            history = await server.store.closed_session(seat["code"])  # type: ignore[attr-defined]
            assert history is not None and history.reason == "expired_while_down"
        server.shutdown()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_python_client_rides_through_a_restart(nursery, tmp_path) -> None:
    """The project's client: SIGTERM (1012), a new process on the same port and store, and both
    clients resume by themselves with replay; state, version and every event are intact."""
    from client import Backoff, ConnectionEvent, ConnectionState, connect
    from protocol import RoomMessageEvent, StateUpdated

    port = free_port()
    flags = ("--port", str(port), "--store", f"sqlite:{tmp_path / 's.db'}")
    process, url = start_server(*flags)
    backoff = Backoff(base=0.1, cap=0.5)
    try:
        async with (
            connect(url, token="host-1", name="host", backoff=backoff) as host,
            connect(url, token="ann-1", name="ann", backoff=backoff) as ann,
        ):
            code = (await host.create_session(state={"round": 1})).code
            await host.create_room("chat")
            await ann.join(code)
            sent = [await ann.send("chat", f"before {i}") for i in range(3)]
            await host.patch_state({"round": 2})
            process.send_signal(signal.SIGTERM)
            status = await trio.to_thread.run_sync(partial(process.wait, timeout=20))
            assert status == 0
            process, _ = start_server(*flags)
            seen: list[object] = []
            with trio.fail_after(30):
                async for event in host.events:
                    seen.append(event)
                    if (
                        isinstance(event, ConnectionEvent)
                        and event.state is ConnectionState.RESUMED
                    ):
                        break
            resumed = seen[-1]
            assert isinstance(resumed, ConnectionEvent) and resumed.recovered is True
            heard = [e for e in seen if isinstance(e, RoomMessageEvent)]
            assert [e.seq for e in heard] == sent  # each of ann's messages once, in order
            version = await host.patch_state({"round": 3})
            assert version == 2  # the first patch made version 1, before the restart
            with trio.fail_after(30):
                async for event in ann.events:
                    if isinstance(event, StateUpdated) and event.version == 2:
                        break
            assert ann.last_seq == host.last_seq
        await stop(process)
    finally:
        process.kill()
