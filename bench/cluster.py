"""Cluster benchmarks: fan-out over one and two server processes, and a killed node's takeover.

    python -m bench.cluster                                  # both, 1 run, every setup and shape
    python -m bench.cluster --only fanout --runs 3 --json cluster.json
    python -m bench.cluster --only takeover --lease-ttl 2 --sessions 1000

**fanout**: ``bench/fanout.py``'s sweep (the same steps, pass rule and bisection) driven by the
C load generator (``bench/cgen``), for each setup:

- ``memory``: one ``--store memory`` process on core 0, the generator on core 1 (reference);
- ``cluster-1``: one ``--cluster`` node on core 0, the generator on core 1;
- ``cluster-2``: two ``--cluster`` nodes, on cores 0 and 1; rooms spread over both (room g's
  host on node g % 2) and every other member on the other node from its host; the generator
  cannot have a core of its own on a 2-core machine and runs unpinned;
- ``cluster-2-local``: the same with every member on its host's node (no cross-node traffic);
- ``memory-node``: ``memory`` with the Node.js generator, to compare the generators.

Redis (the cluster's, unpinned) is not a server process: its CPU (read from its process, which
must run on this machine) is reported on its own. With two nodes, the cross-node overhead is
measured at one rate (half of the two-node saturation): all members on their host's node, then
half on the other node, on fresh clusters; the overhead is the extra CPU per delivery (servers,
and servers plus Redis).

**takeover**: three nodes; ``--sessions`` hosts create their sessions on node A (trio-websocket
clients in this process); A is killed with SIGKILL; every host reconnects to B or C
(alternating) and sends ``session:resume`` with its token, retrying with the client's
exponential backoff (``client.Backoff``); measured from the SIGKILL: the first and the last
successful resume, and p50/p99 per session; the split of the sessions between B and C is read
from the cluster's session directory in Redis.

The Redis database (``--redis``, default DB 15) is flushed before every cluster run: give it
one nothing else uses. Without a reachable Redis the cluster parts are skipped, saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from typing import IO, Any

import attrs
import coredis
import psutil  # type: ignore[import-untyped, unused-ignore]
import trio
import trio_websocket

from client import Backoff
from cluster import REDIS_ERRORS, redis_client
from load import TrioSessions

from . import fanout
from .cgen.generator import CGenerator, Spread
from .generators import install_node_loadgen, node_available
from .servers import ROOT, Running, Target, free_port, pin_load, trio_sessions

SHAPES = [(10, 50), (100, 10)]  # as bench/run.py: rooms x members
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
ALL_CORES = ",".join(str(core) for core in range(psutil.cpu_count() or 1))

# ------------------------------------------------------------------------------------ Redis


def redis_process(url: str) -> psutil.Process | None:
    """The Redis server process listening on ``url``'s port on this machine (its CPU is read
    as a server's is), or None."""
    port = urllib.parse.urlparse(url).port or 6379
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
            return psutil.Process(connection.pid) if connection.pid else None
    return None


async def redis_problem(url: str) -> str | None:
    """Why the cluster parts cannot run (Redis unreachable, no ``--cluster``), or None."""
    try:
        async with redis_client(url) as redis:
            await redis.ping()
    except REDIS_ERRORS as error:
        return f"Redis at {url} is not reachable: {error}"
    shown = await trio.run_process(
        [sys.executable, "server.py", "--help"], cwd=ROOT, capture_stdout=True
    )
    help_text = shown.stdout.decode()
    if "--cluster" not in help_text:
        return "server.py has no --cluster option yet"
    return None


async def flush(url: str) -> None:
    async with redis_client(url) as redis:
        await redis.flushdb()


# ----------------------------------------------------------------------- server processes


@attrs.define
class Node:
    """One server process, started on the given cores; its log goes to a temporary file."""

    name: str
    url: str
    popen: subprocess.Popen[bytes]
    process: psutil.Process
    cores: str
    log: IO[bytes]


def _start(name: str, flags: list[str], cores: str) -> Node:
    port = free_port()
    command = ["taskset", "-c", cores, sys.executable, *trio_sessions(port, *flags)]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (the node's log, closed by log_summary)
    popen = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    end = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        if popen.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"server {name} exited with {popen.returncode}:\n{tail}")
        if time.monotonic() > end:
            popen.kill()
            raise RuntimeError(f"server {name} did not listen within 30 s")
        time.sleep(0.1)
    url = f"ws://127.0.0.1:{port}/ws"
    return Node(name, url, popen, psutil.Process(popen.pid), cores, log)


def _stop(node: Node) -> None:
    if node.popen.poll() is None:
        node.popen.terminate()
        try:
            node.popen.wait(15)
        except subprocess.TimeoutExpired:
            node.popen.kill()
    node.popen.wait()


_STAMP = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")


def log_summary(started: list[Node]) -> dict[str, Any]:
    """Per node: how many warnings and errors it logged, and the first few kinds of them."""
    summary: dict[str, Any] = {}
    for node in started:
        node.log.seek(0)
        lines = node.log.read().decode(errors="replace").splitlines()
        node.log.close()
        bad = [line for line in lines if _STAMP.match(line) and "UNAUTHENTICATED" not in line]
        kinds = list(dict.fromkeys(_STAMP.sub(r"\1 ", line)[:160] for line in bad))
        if bad:
            summary[node.name] = {"warnings_and_errors": len(bad), "first_kinds": kinds[:3]}
    return summary


@contextlib.asynccontextmanager
async def nodes(
    cores: list[str], cluster: str | None, lease_ttl: float, logs: dict[str, Any] | None = None
) -> AsyncIterator[list[Node]]:
    """Server processes, one per entry of ``cores``: cluster nodes of ``cluster`` (its database
    flushed first), or, without a cluster, ``--store memory`` processes. Their warnings and
    errors are summed up into ``logs`` once they have stopped.

    Node ids carry this process's id, so two benchmark runs never share a node id.
    """
    if cluster is not None:
        await flush(cluster)
    started: list[Node] = []
    try:
        for i, where in enumerate(cores):
            name = f"bench{os.getpid()}-n{i}"
            flags = ["--store", "memory"]
            if cluster is not None:
                flags = ["--cluster", cluster, "--node-id", name, "--lease-ttl", str(lease_ttl)]
            started.append(_start(name, flags, where))
        yield started
    finally:
        for node in started:
            _stop(node)
        if cluster is not None:
            with trio.CancelScope(shield=True):
                await flush(cluster)  # leave the database empty
        summary = log_summary(started)
        if logs is not None:
            logs.update(summary)


TARGET = Target("trio-sessions", lambda port: [], TrioSessions, "/ws")


@attrs.define
class Sample:
    """CPU seconds of each server process, of Redis, and of the whole machine (every core's
    busy time), at one instant."""

    servers: list[float]
    redis: float | None
    machine: float


def machine_busy() -> float:
    """Seconds of CPU the whole machine has spent busy (not idle, not waiting), all cores."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@attrs.define
class Measured(Running):
    """Several server processes measured as one server (a drop-in for ``Running``).

    ``cpu_seconds`` is the processes' sum; each call also keeps a :class:`Sample`, so that a
    sweep's steps (each reads it before and after) can be split per process afterwards.
    """

    nodes: list[Node] = attrs.Factory(list)
    redis: psutil.Process | None = None  # the Redis server process, when on this machine
    samples: list[Sample] = attrs.Factory(list)

    @classmethod
    def of(cls, started: list[Node], redis: psutil.Process | None) -> Measured:
        first = started[0]
        return cls(TARGET, first.url, first.process, nodes=started, redis=redis)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(node.url for node in self.nodes)

    def sample(self) -> Sample:
        servers = []
        for node in self.nodes:
            times = node.process.cpu_times()
            servers.append(float(times.user + times.system))
        redis = None
        if self.redis is not None:
            times = self.redis.cpu_times()
            redis = float(times.user + times.system)
        return Sample(servers, redis, machine_busy())

    def cpu_seconds(self) -> float:
        sample = self.sample()
        self.samples.append(sample)
        return sum(sample.servers)

    def wait_idle(self, below: float = 0.05, longest: float = 15.0) -> None:
        end = time.monotonic() + longest
        for node in self.nodes:
            node.process.cpu_percent(None)
        while time.monotonic() < end:
            time.sleep(0.5)
            if all(node.process.cpu_percent(None) <= below * 100 for node in self.nodes):
                return


def shares(before: Sample, after: Sample, seconds: float) -> dict[str, Any]:
    """CPU used between two samples, as shares of a core over ``seconds``."""
    servers = [
        round((b - a) / seconds, 3) for a, b in zip(before.servers, after.servers, strict=True)
    ]
    redis = None
    if before.redis is not None and after.redis is not None:
        redis = round((after.redis - before.redis) / seconds, 3)
    machine = round((after.machine - before.machine) / seconds, 3)
    return {"server_cpu_per_process": servers, "redis_cpu": redis, "machine_cpu": machine}


def other_load(step: dict[str, Any]) -> float:
    """Cores' worth of CPU used by neither the servers, Redis nor the generator during a step
    (the generator's share counts its loaded period only, so this is an upper bound)."""
    ours: float = sum(step["server_cpu_per_process"]) + (step["redis_cpu"] or 0)
    ours += step["generator_cpu"]
    return round(max(0.0, float(step["machine_cpu"]) - ours), 3)


def per_delivery_us(before: Sample, after: Sample, delivered: int) -> dict[str, Any]:
    """CPU microseconds per delivery between two samples: servers, and Redis."""
    if not delivered:
        return {"server_us": None, "redis_us": None}
    servers = sum(after.servers) - sum(before.servers)
    redis = None
    if before.redis is not None and after.redis is not None:
        redis = round((after.redis - before.redis) / delivered * 1e6, 2)
    return {"server_us": round(servers / delivered * 1e6, 2), "redis_us": redis}


# ------------------------------------------------------------------------------ fan-out


@attrs.frozen
class Setup:
    """One configuration of servers and generator for the fan-out sweep."""

    name: str
    cores: tuple[str, ...]  # one server process per entry, on these cores
    cluster: bool
    generator: str  # "c" or "node"
    generator_cores: str
    placement: str
    pinning: str  # said in the output


SETUPS = {
    "memory": Setup("memory", ("0",), False, "c", "1", "same", "server core 0, generator core 1"),
    "cluster-1": Setup(
        "cluster-1",
        ("0",),
        True,
        "c",
        "1",
        "same",
        "node core 0, generator core 1, Redis unpinned",
    ),
    "cluster-2": Setup(
        "cluster-2",
        ("0", "1"),
        True,
        "c",
        ALL_CORES,
        "alternate",
        "nodes on cores 0 and 1; generator and Redis unpinned (share both cores)",
    ),
    "cluster-2-local": Setup(
        "cluster-2-local",
        ("0", "1"),
        True,
        "c",
        ALL_CORES,
        "same",
        "as cluster-2, every member on its host's node (no cross-node traffic)",
    ),
    "memory-node": Setup(
        "memory-node",
        ("0",),
        False,
        "node",
        "1",
        "same",
        "server core 0, Node.js generator core 1",
    ),
}


async def sweep_with(
    server: Measured, groups: int, members: int, generator: str, spread: Spread
) -> dict[str, Any]:
    """``fanout.sweep`` with the given generator: the C one placed by ``spread``, or Node."""
    kind = None if generator == "node" else partial(CGenerator, spread=spread)
    result = await fanout.sweep(server, groups, members, generator, kind=kind)
    result["generator"] = generator
    return result


def attach_cpu(result: dict[str, Any], samples: list[Sample]) -> None:
    """Per-process server CPU, Redis CPU and CPU per delivery on each of the sweep's steps.

    Every step (the rising ones, the bisections, then the half-load one) read the CPU before
    and after, in that order: the samples come in pairs, one pair per step.
    """
    steps = list(result.get("steps", []))
    durations = [fanout.STEP] * len(steps)
    if result.get("half"):
        steps.append(result["half"])
        durations.append(2 * fanout.STEP)
    if len(samples) != 2 * len(steps):
        result["cpu_note"] = f"{len(samples)} CPU samples for {len(steps)} steps: not split"
        return
    for i, (step, seconds) in enumerate(zip(steps, durations, strict=True)):
        before, after = samples[2 * i], samples[2 * i + 1]
        step.update(shares(before, after, seconds))
        step["other_cpu"] = other_load(step)
        delivered = int(step["delivered_per_s"] * seconds)
        step.update(per_delivery_us(before, after, delivered))
        if delivered:
            gen_us = step["generator_cpu"] * seconds / delivered * 1e6
            step["generator_us"] = round(gen_us, 2)


async def fanout_run(
    setup: Setup, groups: int, members: int, redis_url: str | None, lease_ttl: float
) -> dict[str, Any]:
    """One sweep of one setup and shape on freshly started servers."""
    cluster = redis_url if setup.cluster else None
    redis = redis_process(redis_url) if redis_url is not None else None
    logs: dict[str, Any] = {}
    async with nodes(list(setup.cores), cluster, lease_ttl, logs) as started:
        server = Measured.of(started, redis)
        spread = Spread(server.urls, setup.placement, setup.generator_cores)
        result = await sweep_with(server, groups, members, setup.generator, spread)
        attach_cpu(result, server.samples)
    result.update(
        setup=setup.name, pinning=setup.pinning, processes=len(setup.cores), server_logs=logs
    )
    return result


def cross_node_share(members: int, placement: str, servers: int = 2) -> float:
    """The share of deliveries that cross nodes: with R of a room's M clients on another node
    than the session's owner (its host's), and every client sending alike, it is R / M."""
    if placement == "same":
        return 0.0
    remote = sum(1 for m in range(1, members) if placement == "other" or m % servers != 0)
    return remote / members


async def overhead_run(
    groups: int, members: int, sends_per_s: float, redis_url: str, lease_ttl: float
) -> dict[str, Any]:
    """Two nodes at one rate: all members on their host's node, then half on the other one,
    each on a fresh cluster; CPU per delivery of each and the difference."""
    out: dict[str, Any] = {"sends_per_s": round(sends_per_s, 1)}
    clients = groups * members
    for placement in ("same", "alternate"):
        logs: dict[str, Any] = {}
        async with nodes(["0", "1"], redis_url, lease_ttl, logs) as started:
            server = Measured.of(started, redis_process(redis_url))
            spread = Spread(server.urls, placement, ALL_CORES)
            async with CGenerator(server, groups, members, spread) as load:
                await trio.to_thread.run_sync(server.wait_idle)
                before = server.sample()
                figures = await load.phase(sends_per_s / clients, 2 * fanout.STEP, fanout.DRAIN)
                after = server.sample()
        seconds = 2 * fanout.STEP
        row = {
            "delivered_per_s": round(figures["delivered"] / seconds),
            "ratio": round(figures["delivered"] / figures["expected"], 4)
            if figures["expected"]
            else 0,
            "p50_ms": figures["p50"],
            "p99_ms": figures["p99"],
            "generator_cpu": round(figures["cpu"], 3),
            "generator_us": round(figures["cpu_seconds"] / figures["delivered"] * 1e6, 2)
            if figures["delivered"]
            else None,
            **shares(before, after, seconds),
            **per_delivery_us(before, after, figures["delivered"]),
            "server_logs": logs,
        }
        row["other_cpu"] = other_load(row)
        out[placement] = row
    same, alternate = out["same"], out["alternate"]
    share = out["cross_node_share"] = cross_node_share(members, "alternate")
    if same["server_us"] is not None and alternate["server_us"] is not None:
        extra = alternate["server_us"] - same["server_us"]
        out["overhead_server_us"] = round(extra, 2)
        out["overhead_server_us_per_cross_node_delivery"] = round(extra / share, 2)
        if same["redis_us"] is not None and alternate["redis_us"] is not None:
            both = alternate["server_us"] + alternate["redis_us"]
            total = both - same["server_us"] - same["redis_us"]
            out["overhead_total_us"] = round(total, 2)
            out["overhead_total_us_per_cross_node_delivery"] = round(total / share, 2)
    return out


async def fanout_all(
    runs: int,
    setups: list[Setup],
    shapes: list[tuple[int, int]],
    redis_url: str | None,
    lease_ttl: float,
) -> dict[str, Any]:
    """Every setup and shape, runs interleaved; then the two-node overhead per shape."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    overhead: dict[str, list[dict[str, Any]]] = {}
    for run in range(runs):
        for groups, members in shapes:
            shape = f"{groups}x{members}"
            for setup in setups:
                print(f"run {run + 1}/{runs}: {setup.name}, {shape}", flush=True)
                result = await fanout_run(setup, groups, members, redis_url, lease_ttl)
                results.setdefault(setup.name, {}).setdefault(shape, []).append(result)
                best = result.get("best") or {}
                print(f"  -> {best.get('delivered_per_s')} deliveries/s", flush=True)
            two = results.get("cluster-2", {}).get(shape, [])
            half = (two[-1].get("half") or {}) if two else {}
            if redis_url is not None and half.get("sends_per_s"):
                print(f"run {run + 1}/{runs}: cross-node overhead, {shape}", flush=True)
                row = await overhead_run(groups, members, half["sends_per_s"], redis_url, lease_ttl)
                overhead.setdefault(shape, []).append(row)
    return {"results": results, "overhead": overhead}


# ------------------------------------------------------------------------------ takeover


@attrs.define
class Host:
    """A session's host in the takeover run."""

    index: int
    code: str = ""
    token: str = ""
    last_seq: int = 0
    resumed_at: float | None = None  # seconds after the SIGKILL
    resumed_on: str = ""
    attempts: int = 0


class Link:
    """One trio-websocket connection: requests with refs, events skipped."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self._refs = 0

    @classmethod
    async def open(cls, nursery: trio.Nursery, url: str) -> Link:
        ws = await trio_websocket.connect_websocket_url(
            nursery, url, message_queue_size=64, max_message_size=16 * 1024 * 1024
        )
        link = cls(ws)
        await link.request("hello")
        return link

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The reply to a new request: ``{"ok": ..., "data" | "error": ...}``."""
        self._refs += 1
        ref = self._refs
        await self.ws.send_message(json.dumps({"type": kind, "ref": ref, **fields}))
        while True:
            message: dict[str, Any] = json.loads(await self.ws.get_message())
            if message.get("type") == "reply" and message.get("ref") == ref:
                return message

    async def close(self) -> None:
        with trio.move_on_after(1):
            await self.ws.aclose()


async def create_sessions(
    nursery: trio.Nursery, url: str, count: int, links: dict[int, Link]
) -> list[Host]:
    """``count`` hosts, each with its session, connected to ``url`` (kept in ``links``)."""
    hosts = [Host(i) for i in range(count)]
    limit = trio.CapacityLimiter(100)

    async def create(host: Host) -> None:
        async with limit:
            link = await Link.open(nursery, url)
            reply = await link.request("session:create")
            while not reply["ok"] and "retry_after_ms" in reply["error"]:  # as a client does
                await trio.sleep(reply["error"]["retry_after_ms"] / 1000)
                reply = await link.request("session:create")
            if not reply["ok"]:
                raise RuntimeError(f"session:create refused: {reply['error']}")
            data = reply["data"]
            host.code, host.token, host.last_seq = data["code"], data["resume_token"], data["seq"]
            links[host.index] = link

    async with trio.open_nursery() as creating:
        for host in hosts:
            creating.start_soon(create, host)
    return hosts


async def owners(redis: coredis.Redis[bytes], codes: list[str]) -> list[str | None]:
    """Each session's owner node, from the cluster's session directory."""
    async with redis.pipeline(transaction=False) as pipe:
        requests: list[Any] = [pipe.hget(f"ts:dir:{code}", "owner") for code in codes]
    replies = [await request for request in requests]
    return [None if reply is None else reply.decode() for reply in replies]


async def wait_owned(
    redis: coredis.Redis[bytes], codes: list[str], node: str, longest: float = 15.0
) -> bool:
    """Until the directory says ``node`` owns every one of ``codes`` (records written)."""
    end = trio.current_time() + longest
    while trio.current_time() < end:
        if all(owner == node for owner in await owners(redis, codes)):
            return True
        await trio.sleep(0.1)
    return False


async def resume(
    nursery: trio.Nursery,
    host: Host,
    url: str,
    killed_at: float,
    backoff: Backoff,
    outcomes: Counter[str],
    attempt_timeout: float,
) -> None:
    """Reconnect and resume until it works: errors and closes are retried after a backoff
    delay on the same connection; a request unanswered for ``attempt_timeout`` (or a lost
    connection) opens a new one."""
    link: Link | None = None
    while True:
        host.attempts += 1
        outcome = "timeout"
        with trio.move_on_after(attempt_timeout):
            try:
                if link is None:
                    link = await Link.open(nursery, url)
                reply = await link.request(
                    "session:resume", token=host.token, last_seq=host.last_seq
                )
                if reply["ok"]:
                    host.resumed_at = trio.current_time() - killed_at
                    host.resumed_on = url
                    outcomes["ok"] += 1
                    return
                outcome = f"error {reply['error']['code']}"
            except (OSError, trio_websocket.HandshakeError) as error:
                outcome, link = f"connect {type(error).__name__}", None
            except trio_websocket.ConnectionClosed as closed:
                code = closed.reason.code if closed.reason is not None else None
                outcome, link = f"closed {code}", None
        if outcome == "timeout" and link is not None:
            nursery.start_soon(link.close)
            link = None
        outcomes[outcome] += 1
        await trio.sleep(backoff.delay(host.attempts - 1))


def _metrics_sessions(url: str) -> float | None:
    """``trio_sessions_sessions_live`` of the node at ``url`` (public /metrics)."""
    text = fanout.metrics_text(url)
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("trio_sessions_sessions_live "):
            return float(line.split()[1])
    return None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.floor(q * len(ordered)))]


async def takeover(
    redis_url: str,
    lease_ttl: float,
    sessions: int,
    backoff: Backoff,
    attempt_timeout: float,
    deadline: float,
) -> dict[str, Any]:
    """Create ``sessions`` on node A, SIGKILL it, resume every one on B or C; the timings."""
    links: dict[int, Link] = {}
    outcomes: Counter[str] = Counter()
    logs: dict[str, Any] = {}
    async with (
        redis_client(redis_url) as redis,
        nodes([ALL_CORES] * 3, redis_url, lease_ttl, logs) as (a, b, c),
    ):
        async with trio.open_nursery() as nursery:
            hosts = await create_sessions(nursery, a.url, sessions, links)
            codes = [host.code for host in hosts]
            settled = await wait_owned(redis, codes, a.name)
            await trio.sleep(0.5)
            killed_at = trio.current_time()
            a.popen.send_signal(signal.SIGKILL)
            for link in links.values():
                nursery.start_soon(link.close)
            with trio.move_on_after(deadline):
                async with trio.open_nursery() as resuming:
                    for host in hosts:
                        target = (b if host.index % 2 == 0 else c).url
                        resuming.start_soon(
                            resume,
                            nursery,
                            host,
                            target,
                            killed_at,
                            backoff,
                            outcomes,
                            attempt_timeout,
                        )
            letters = {a.name: "A", b.name: "B", c.name: "C"}
            split = Counter(letters.get(str(o), str(o)) for o in await owners(redis, codes))
            live = {letters[n.name]: _metrics_sessions(n.url) for n in (b, c)}
            nursery.cancel_scope.cancel()
        a.popen.wait()
    times = [host.resumed_at for host in hosts if host.resumed_at is not None]
    return {
        "lease_ttl_s": lease_ttl,
        "sessions": sessions,
        "owned_by_a_before_kill": settled,
        "resumed": len(times),
        "first_resumed_s": round(min(times), 3) if times else None,
        "all_resumed_s": round(max(times), 3) if len(times) == sessions else None,
        "last_resumed_s": round(max(times), 3) if times else None,
        "p50_s": _round(_percentile(times, 0.5)),
        "p99_s": _round(_percentile(times, 0.99)),
        "attempts_mean": round(statistics.mean(h.attempts for h in hosts), 2),
        "attempts_max": max(h.attempts for h in hosts),
        "owners_after": dict(split),
        "sessions_live_metric": live,
        "clients_on": dict(Counter("B" if h.index % 2 == 0 else "C" for h in hosts)),
        "retry_outcomes": dict(outcomes),
        "backoff": {"base_s": backoff.base, "cap_s": backoff.cap, "jitter": "full"},
        "attempt_timeout_s": attempt_timeout,
        "server_logs": logs,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ------------------------------------------------------------------------------ report


def _median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _per_process(runs: list[dict[str, Any]], key: str, field: str) -> str:
    """Median per process of ``field`` in each run's ``key`` step, as "a / b"."""
    lists: list[list[float]] = [values for r in runs if (values := (r.get(key) or {}).get(field))]
    if not lists:
        return "-"
    width = max(len(values) for values in lists)
    medians = [_median([v[i] for v in lists if len(v) > i]) for i in range(width)]
    return " / ".join(f"{m:.2f}" for m in medians)


def _cell(value: Any, form: str = "{}") -> str:
    return "-" if value is None else form.format(value)


def summarize(fanout_out: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per setup and shape: medians over the runs."""
    rows = []
    for name, shapes in fanout_out["results"].items():
        for shape, runs in shapes.items():
            rates = [(r.get("best") or {}).get("delivered_per_s", 0) for r in runs]

            def median(key: str, field: str, runs: list[dict[str, Any]] = runs) -> Any:
                return _median([(r.get(key) or {}).get(field) for r in runs])

            rows.append(
                {
                    "shape": shape,
                    "setup": name,
                    "pinning": runs[0]["pinning"],
                    "delivered_per_s": statistics.median(rates),
                    "range": [min(rates), max(rates)],
                    "p50_ms_at_half": median("half", "p50_ms"),
                    "p99_ms_at_half": median("half", "p99_ms"),
                    "server_cpu_at_best": _per_process(runs, "best", "server_cpu_per_process"),
                    "redis_cpu_at_best": median("best", "redis_cpu"),
                    "generator_cpu_at_best": median("best", "generator_cpu"),
                    "generator_cpu_at_failure": median("first_failure", "generator_cpu"),
                    "server_us_at_half": median("half", "server_us"),
                    "redis_us_at_half": median("half", "redis_us"),
                    "generator_us_at_half": median("half", "generator_us"),
                    "generator_limited_runs": sum(bool(r.get("generator_limited")) for r in runs),
                    "other_cpu_at_best": median("best", "other_cpu"),
                    "runs": len(runs),
                }
            )
    return rows


def markdown(out: dict[str, Any]) -> str:
    lines: list[str] = []
    if out.get("fanout_summary"):
        lines += [
            "Fan-out (deliveries/s at the best passing step, median of runs; CPU in shares of a"
            " core; µs = CPU microseconds per delivery at half load; other load = cores used by"
            " other processes of the machine during the best step)",
            "",
            "| shape | setup | deliveries/s | range | p50 / p99 at half (ms) | server CPU per "
            "process | Redis CPU | generator CPU at best / at failure | server / Redis / "
            "generator µs per delivery | generator-limited runs | other load at best | pinning |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in out["fanout_summary"]:
            lo, hi = r["range"]
            lines.append(
                f"| {r['shape']} | {r['setup']} | {r['delivered_per_s']:,} | {lo:,}-{hi:,} "
                f"| {_cell(r['p50_ms_at_half'])} / {_cell(r['p99_ms_at_half'])} "
                f"| {r['server_cpu_at_best']} | {_cell(r['redis_cpu_at_best'])} "
                f"| {_cell(r['generator_cpu_at_best'])} / {_cell(r['generator_cpu_at_failure'])} "
                f"| {_cell(r['server_us_at_half'])} / {_cell(r['redis_us_at_half'])} / "
                f"{_cell(r['generator_us_at_half'])} "
                f"| {r['generator_limited_runs']} of {r['runs']} "
                f"| {_cell(r['other_cpu_at_best'])} | {r['pinning']} |"
            )
    overhead = (out.get("fanout") or {}).get("overhead") or {}
    if overhead:
        lines += [
            "",
            "Cross-node overhead, two nodes at one rate (half of the two-node saturation): all "
            "members on their host's node (same) against half on the other node (alternate)",
            "",
            "| shape | sends/s | placement | deliveries/s | p99 (ms) | server CPU per process "
            "| Redis CPU | generator CPU | server µs / delivery | Redis µs / delivery "
            "| generator µs / delivery | other load |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for shape, rows in overhead.items():
            for row in rows:
                for placement in ("same", "alternate"):
                    p = row[placement]
                    cpus = " / ".join(f"{v:.2f}" for v in p["server_cpu_per_process"])
                    lines.append(
                        f"| {shape} | {row['sends_per_s']:,} | {placement} "
                        f"| {p['delivered_per_s']:,} | {_cell(p['p99_ms'], '{:.1f}')} | {cpus} "
                        f"| {_cell(p['redis_cpu'])} | {p['generator_cpu']} | {p['server_us']} "
                        f"| {_cell(p['redis_us'])} | {_cell(p['generator_us'])} "
                        f"| {p['other_cpu']} |"
                    )
                lines.append(
                    f"| {shape} | | **overhead** per delivery | | | | | | "
                    f"**{_cell(row.get('overhead_server_us'), '{:+}')}** "
                    f"| servers + Redis: **{_cell(row.get('overhead_total_us'), '{:+}')}** | | |"
                )
                lines.append(
                    f"| {shape} | | per cross-node delivery ({row['cross_node_share']:.0%} of "
                    f"them) | | | | | | "
                    f"{_cell(row.get('overhead_server_us_per_cross_node_delivery'), '{:+}')} "
                    f"| servers + Redis: "
                    f"{_cell(row.get('overhead_total_us_per_cross_node_delivery'), '{:+}')} | | |"
                )
    for t in out.get("takeover") or []:
        lines += [
            "",
            f"Takeover: {t['sessions']:,} sessions on node A, SIGKILL, lease TTL "
            f"{t['lease_ttl_s']} s, backoff {t['backoff']['base_s']}-{t['backoff']['cap_s']} s "
            f"(full jitter), a request unanswered for {t['attempt_timeout_s']} s is retried on a "
            "new connection",
            "",
            "| resumed | first resume (s) | all resumed (s) | p50 / p99 per session (s) "
            "| attempts mean / max | owners after | clients on | retried because |",
            "|---:|---:|---:|---:|---:|---|---|---|",
            f"| {t['resumed']:,} of {t['sessions']:,} | {_cell(t['first_resumed_s'])} "
            f"| {_cell(t['all_resumed_s'])} | {_cell(t['p50_s'])} / {_cell(t['p99_s'])} "
            f"| {t['attempts_mean']} / {t['attempts_max']} | {_dict(t['owners_after'])} "
            f"| {_dict(t['clients_on'])} | {_dict(t['retry_outcomes'])} |",
        ]
    for note in out.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines)


def _dict(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(values.items())) or "-"


# ------------------------------------------------------------------------------ command line


def _shape(text: str) -> tuple[int, int]:
    groups, _, members = text.partition("x")
    return int(groups), int(members)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": psutil.cpu_count(),
            "python": platform.python_version(),
        },
        "notes": [],
    }
    problem = await redis_problem(args.redis)
    if problem:
        out["notes"].append(f"cluster parts skipped: {problem}")
        print(f"skipping the cluster parts: {problem}", flush=True)
    redis_url = None if problem else args.redis
    if "fanout" in args.only:
        setups = [SETUPS[name] for name in args.setups]
        if redis_url is None:
            setups = [setup for setup in setups if not setup.cluster]
        if any(setup.generator == "node" for setup in setups):
            if not node_available():
                raise SystemExit("memory-node needs Node.js and npm")
            install_node_loadgen()
        pin_load()  # this process waits on the load core, as bench/run.py's does
        out["fanout"] = await fanout_all(
            args.runs, setups, [_shape(s) for s in args.shapes], redis_url, args.lease_ttl
        )
        out["fanout_summary"] = summarize(out["fanout"])
        out["notes"].append(
            "Redis serves every database of the machine: its CPU includes other clients' load"
        )
    if "takeover" in args.only and redis_url is not None:
        psutil.Process().cpu_affinity([])  # the takeover's clients may use every core
        backoff = Backoff(base=args.backoff_base, cap=args.backoff_cap)
        out["takeover"] = []
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}: takeover of {args.sessions} sessions", flush=True)
            result = await takeover(
                redis_url, args.lease_ttl, args.sessions, backoff, args.attempt_timeout, 120
            )
            out["takeover"].append(result)
            print(f"  -> all resumed after {result['all_resumed_s']} s", flush=True)
    return out


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", nargs="+", default=["fanout", "takeover"])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", help="write every measurement to this file")
    parser.add_argument(
        "--setups",
        nargs="+",
        default=["memory", "cluster-1", "cluster-2-local", "cluster-2"],
        choices=list(SETUPS),
    )
    parser.add_argument("--shapes", nargs="+", default=[f"{g}x{m}" for g, m in SHAPES])
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="redis://HOST:PORT/DB (flushed)")
    parser.add_argument(
        "--lease-ttl", type=float, default=5.0, help="the nodes' --lease-ttl (server default 5)"
    )
    parser.add_argument("--sessions", type=int, default=1000, help="sessions taken over")
    parser.add_argument("--backoff-base", type=float, default=0.1)
    parser.add_argument("--backoff-cap", type=float, default=1.0)
    parser.add_argument(
        "--attempt-timeout",
        type=float,
        default=10.0,
        help="seconds a resume may go unanswered before a new connection is tried",
    )
    args = parser.parse_args(argv)
    out = trio.run(main, args)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(out, file, indent=2)
    print(markdown(out))


if __name__ == "__main__":
    cli()
