"""Cluster mode end to end: three real server processes on loopback and a real Redis.

The machine's Redis (127.0.0.1:6379, database ``DB``, emptied before each test) serves every
test but the outage one, which starts a Redis of its own on a free port so that it can stop and
restart it. Without a Redis on 6379 the tests skip, saying so; CI starts one first.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from client import (
    Backoff,
    Client,
    ConnectionEvent,
    ConnectionLost,
    ConnectionState,
    RequestError,
    connect,
    failover_opener,
)
from cluster import redis_client
from protocol import StateUpdated

from .conftest import ROOT, ServerProcess

REDIS = ("127.0.0.1", 6379)
DB = 11  # the tests' database on the machine's Redis
LEASE_TTL = 2.0  # seconds: short, so takeovers happen within a test's patience (a busy machine
# pauses a process for a good part of a second: shorter leases expire on live nodes)
GUARD = 60.0  # seconds of real time per test


def _redis_up(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((REDIS[0], port)) == 0


@pytest.fixture
async def redis_url() -> str:
    if not _redis_up(REDIS[1]):
        pytest.skip("cluster tests need Redis on 127.0.0.1:6379, and none is running")
    url = f"redis://{REDIS[0]}:{REDIS[1]}/{DB}"
    async with redis_client(url) as redis:
        await redis.flushdb()
    return url


class Node:
    """One ``server.py --cluster`` process."""

    def __init__(self, url: str, name: str, *flags: str) -> None:
        self.name = name
        self.flags = ("--cluster", url, "--node-id", name, "--lease-ttl", str(LEASE_TTL), *flags)
        self.server = self._start()

    def _start(self) -> ServerProcess:
        command = [sys.executable, "server.py", "--port", "0", "--admin-port", "0"]
        command += ["--log-level", "info", "--store", "memory", *self.flags]
        process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        server = ServerProcess(process)
        self.url = server.url  # waits until it listens
        return server

    def kill(self) -> None:
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait()

    def restart(self) -> None:
        self.server = self._start()

    def stop(self) -> None:
        if self.server.process.poll() is None:
            self.server.stop()

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.server.lines)


@contextlib.contextmanager
def nodes(url: str, count: int, *flags: str) -> Iterator[list[Node]]:
    started: list[Node] = []
    try:
        for i in range(count):
            started.append(Node(url, f"n{i}", *flags))
        yield started
        for node in started:
            node.stop()
    except BaseException:
        for node in started:  # shown with the failure
            print(f"--- {node.name}:\n{''.join(node.server.lines)}")
        raise
    finally:
        for node in started:
            node.server.process.kill()
            node.server.process.wait()


@contextlib.asynccontextmanager
async def client(*urls: str, name: str) -> AsyncIterator[Client]:
    backoff = Backoff(base=0.1, cap=0.5, give_up_after=30.0)
    async with connect(failover_opener(urls), token=name, name=name, backoff=backoff) as c:
        yield c


async def next_event(c: Client, kind: str) -> Any:
    """The next event of ``kind`` (a wire type, or a ConnectionState), skipping others."""
    async for event in c.events:
        if isinstance(event, ConnectionEvent):
            if event.state == kind:
                return event
        elif getattr(event, "TYPE", None) == kind:
            return event
    raise AssertionError("events ended")


async def eventually(check: Callable[[], Awaitable[object]], within: float = 15.0) -> None:
    """Wait until ``check()`` is true: the state of other processes (Redis, the nodes) has no
    event to wait on, so it is polled, every 50 ms of real time, for at most ``within`` s."""
    with trio.fail_after(within):
        while True:
            if await check():
                return
            await trio.sleep(0.05)


async def owners(url: str) -> dict[str, str]:
    """Session code -> owner node, from the session directory (sessions with a record)."""
    async with redis_client(url) as redis:
        codes = [key.decode().split(":")[-1] for key in await redis.keys("ts:rec:*")]
        found = {}
        for code in codes:
            owner = await redis.hget(f"ts:dir:{code}", "owner")
            found[code] = owner.decode() if owner else ""
        return found


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


async def _count_owned(url: str, count: int) -> bool:
    return len(await owners(url)) >= count


async def test_sessions_spread_and_cross_node_members_get_every_event_in_order(
    redis_url: str,
) -> None:
    with trio.fail_after(GUARD), nodes(redis_url, 3) as (a, b, c):
        codes = []
        for i, node in enumerate((a, b, c, a, b, c)):
            async with client(node.url, name=f"host{i}") as host:
                codes.append((await host.create_session(state={"n": 0})).code)
        await eventually(lambda: _count_owned(redis_url, 6))
        assert sorted((await owners(redis_url)).values()) == ["n0", "n0", "n1", "n1", "n2", "n2"]
        view = await trio.to_thread.run_sync(_get_json, b.server.admin_url + "/api/v1/cluster")
        assert view["sessions"] == 6 and view["node_id"] == "n1" and view["redis_available"]
        assert [(n["node_id"], n["alive"], n["sessions"]) for n in view["nodes"]] == [
            ("n0", True, 2),
            ("n1", True, 2),
            ("n2", True, 2),
        ]
        assert [n["this_node"] for n in view["nodes"]] == [False, True, False]

        async with (
            client(a.url, name="teacher") as host,
            client(b.url, name="s1") as s1,
            client(c.url, name="s2") as s2,
            client(a.url, name="s3") as s3,
        ):
            code = (await host.create_session()).code
            joined = {member: (await member.join(code)).seq for member in (s1, s2, s3)}
            await host.create_room("quiz", "poll")
            for i in range(1, 46):  # 90 requests: within the rate limit's burst
                await host.patch_state({"i": i})
                await host.send("quiz", {"i": i})
            for member in (s1, s2, s3):
                seen, last = [], joined[member]
                while len(seen) < 90:
                    event = await member.events.receive()
                    if getattr(event, "seq", None) is not None and event.seq > last:
                        assert event.seq == last + 1, (event, last)
                        last = event.seq
                        if event.TYPE in ("state:updated", "room:message"):
                            seen.append(event)
                values = [e.data["i"] if e.TYPE == "room:message" else e.patch["i"] for e in seen]
                assert values == [i for i in range(1, 46) for _ in (0, 1)]


async def test_a_killed_node_s_sessions_resume_elsewhere_without_losing_an_acked_update(
    redis_url: str,
) -> None:
    with trio.fail_after(GUARD), nodes(redis_url, 3, "--durability", "strict") as (a, b, c):
        async with (
            client(a.url, b.url, c.url, name="host") as host,
            client(b.url, c.url, name="p1") as p1,
            client(c.url, b.url, name="p2") as p2,
        ):
            code = (await host.create_session(state={"n": 0})).code
            await p1.join(code)
            await p2.join(code)
            acked = 0
            reached: dict[int, trio.Event] = {20: trio.Event()}

            async def write() -> None:
                nonlocal acked
                for n in range(1, 10_000):
                    try:
                        await host.set_state({"n": n})
                    except (RequestError, ConnectionLost):  # lost mid-request: the node died
                        continue
                    acked = n
                    for target in [t for t in reached if t <= n]:
                        reached.pop(target).set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await reached[20].wait()
                a.kill()
                killed_at, at_kill = trio.current_time(), acked
                reached[at_kill + 20] = more = trio.Event()  # writes go on at the new owner
                resumed = await next_event(host, ConnectionState.RESUMED)
                took = trio.current_time() - killed_at
                await more.wait()
                nursery.cancel_scope.cancel()
            assert resumed.snapshot is not None or resumed.recovered
            assert took < 10 * LEASE_TTL
            # every update acknowledged before the kill is in the state the session has now
            async with client(b.url, name="late") as late:
                joined = await late.join(code)
                assert joined.state["n"] >= acked
                names = [p.name for p in joined.participants]
                assert sorted(names) == ["host", "late", "p1", "p2"]  # one seat each
            found = await owners(redis_url)
            assert found[code] in ("n1", "n2")
            for member in (p1, p2):  # cut off with 1012, resumed at the new owner
                back = await next_event(member, ConnectionState.RESUMED)
                # strict durability: the stored tail holds every event they saw, so the new
                # owner kept the epoch and replays what they missed, in order
                assert back.recovered is True
                seqs, n = [], 0
                while n < at_kill:
                    event = await member.events.receive()
                    if isinstance(event, StateUpdated):
                        assert event.state["n"] >= n
                        n = event.state["n"]
                    if getattr(event, "seq", None):
                        seqs.append(event.seq)
                assert seqs == sorted(set(seqs))  # in order, none twice


async def _owned_by(url: str, code: str, node: str) -> bool:
    return (await owners(url)).get(code) == node


async def test_a_restarted_node_does_not_resurrect_its_sessions(redis_url: str) -> None:
    with trio.fail_after(GUARD), nodes(redis_url, 2) as (a, _b):
        async with client(a.url, name="host") as host:
            code = (await host.create_session(state={"v": 1})).code
            await host.set_state({"v": 2})
        await eventually(lambda: _owned_by(redis_url, code, "n0"))
        a.kill()
        await eventually(lambda: _owned_by(redis_url, code, "n1"))
        a.restart()
        async with client(a.url, name="someone") as someone:
            joined = await someone.join(code)  # relayed to n1, the owner
            assert joined.state == {"v": 2}
        assert (await owners(redis_url))[code] == "n1"
        assert not a.logged(f"session {code}: ")  # no actor of it ever ran on the new n0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def own_redis() -> Iterator[tuple[str, Any]]:
    """A Redis of this test's own (it keeps nothing on disk), which it may stop and restart."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("the outage test needs the redis-server program (Debian: redis-server)")
    port = _free_port()
    workdir = Path(tempfile.mkdtemp())
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--dir",
        str(workdir),
    ]
    command += ["--appendonly", "no"]
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while not _redis_up(port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop() -> None:
        processes[-1].kill()
        processes[-1].wait()

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", (start, stop)
    finally:
        for process in processes:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


_attempts = itertools.count()


async def _create_answers(url: str, error: str | None) -> bool:
    """Whether a new user's session:create on ``url`` fails with ``error`` (None: succeeds)."""
    async with client(url, name=f"newcomer{next(_attempts)}") as newcomer:
        try:
            await newcomer.create_session()
        except RequestError as refused:
            return refused.code == error
        return error is None


async def test_redis_outage_degraded_mode_then_recovery() -> None:
    with own_redis() as (url, (start_redis, stop_redis)), nodes(url, 2) as (a, b):
        with trio.fail_after(GUARD):
            async with (
                client(a.url, name="host") as host,
                client(a.url, name="local") as local,
                client(b.url, name="remote") as remote,
            ):
                code = (await host.create_session(state={"v": 0})).code
                await local.join(code)
                await remote.join(code)
                stop_redis()
                # existing sessions go on: a change reaches the member on the same node
                await host.set_state({"v": 1})
                assert (await next_event(local, "state:updated")).state == {"v": 1}
                # new sessions are refused with a clear error while Redis is away (at once,
                # once the node has noticed the outage)
                await eventually(lambda: _create_answers(a.url, "unavailable"))
                start_redis()  # empty: it kept nothing
                # recovery: the session is stored again, and new sessions open again
                await eventually(lambda: _owned_by(url, code, "n0"))
                await eventually(lambda: _create_answers(b.url, None))
                # the member relayed through n1 was cut off and resumed: it sees new changes
                await host.set_state({"v": 2})
                event = await next_event(remote, "state:updated")
                while event.state != {"v": 2}:
                    event = await next_event(remote, "state:updated")


async def _live_here(node: Node) -> set[str]:
    listing = await trio.to_thread.run_sync(
        _get_json, node.server.admin_url + "/api/v1/sessions?limit=1000"
    )
    return {session["code"] for session in listing["sessions"]}


async def test_a_node_that_lost_its_lease_stops_serving_what_others_took(redis_url: str) -> None:
    """Fencing: n0's lease vanishes while n0 runs (as when it pauses past its TTL). The others
    may take its sessions over; n0 registers anew and keeps only those nobody took. Whatever
    the race gives, each session ends up served by exactly one node, and its host, cut off
    with 1012 if its session moved, resumes and goes on."""
    with trio.fail_after(GUARD), nodes(redis_url, 3) as (a, b, c):
        async with (
            client(a.url, b.url, c.url, name="h1") as h1,
            client(a.url, b.url, c.url, name="h2") as h2,
        ):
            codes = [(await h.create_session(state={"v": 0})).code for h in (h1, h2)]
            await eventually(lambda: _count_owned(redis_url, 2))
            async with redis_client(redis_url) as redis:
                await redis.delete(["ts:node:n0"])
            await eventually(lambda: _registered_anew(redis_url, "n0"))
            await eventually(lambda: _each_served_once(redis_url, (a, b, c), codes))
            for h in (h1, h2):  # answered by whichever node owns its session now
                assert await h.set_state({"v": 1}) == 1


async def _each_served_once(url: str, cluster: tuple[Node, ...], codes: list[str]) -> bool:
    """Whether each session is live on exactly one node: the one the directory names."""
    found = await owners(url)
    served = [await _live_here(node) for node in cluster]
    return sorted(found) == sorted(codes) and all(
        [node.name for node, live in zip(cluster, served, strict=True) if code in live]
        == [found[code]]
        for code in codes
    )


async def _registered_anew(url: str, node: str) -> bool:
    async with redis_client(url) as redis:
        lease = await redis.get(f"ts:node:{node}")
        return lease is not None and int(lease) > 1


async def test_a_drained_node_hands_its_sessions_over_without_waiting_for_its_lease(
    redis_url: str,
) -> None:
    """A graceful stop flushes the sessions and gives the lease up: the host resumes on the
    other node sooner than the lease would have expired, with every acknowledged change."""
    with trio.fail_after(GUARD), nodes(redis_url, 2) as (a, _b):
        async with client(a.url, _b.url, name="host") as host:
            await host.create_session(state={"v": 0})
            assert await host.set_state({"v": 1}) == 1
            stopping = trio.current_time()
            await trio.to_thread.run_sync(a.stop)  # SIGINT: the node must exit cleanly
            resumed = await next_event(host, ConnectionState.RESUMED)
            assert trio.current_time() - stopping < LEASE_TTL
            assert resumed.snapshot is None or resumed.snapshot.state == {"v": 1}
            assert await host.set_state({"v": 2}) == 2


def test_a_node_whose_redis_does_not_answer_refuses_to_start_without_showing_the_password() -> None:
    """Start-up in cluster mode needs Redis: without it the server exits 2 and says which
    address it could not reach; the URL's password stays out of the log."""
    url = f"redis://user:hunter2@127.0.0.1:{_free_port()}/0"
    command = [sys.executable, "server.py", "--cluster", url, "--port", "0", "--admin-port", "-1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot reach the cluster's Redis at 127.0.0.1:" in done.stderr
    assert "hunter2" not in done.stderr
