"""``trio-sessions-load``: drive a running server with simulated sessions and report.

One load process per core it is given (``--processes``), each a Trio run with its share of the
sessions; the parent shows progress, merges what they measured, scrapes the server's
``/metrics`` before and after, and prints (and with ``--json``, writes) the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs
import trio

from ._dialects import TrioSessions
from ._link import split_url
from ._stats import Stats
from ._swarm import CONNECT_TIMEOUT, Rates, Swarm

MAX_CLIENTS: Final = 100_000
MAX_DURATION: Final = 24 * 3600.0
GENERATOR_CPU_LIMIT: Final = 0.9  # a load process busier than this may be what limits the run
GENERATOR_LAG_LIMIT: Final = 0.25  # seconds senders may run late before the generator is suspect


@attrs.frozen
class Plan:
    """One load run, as every process receives it."""

    url: str
    sessions: int
    participants: int  # per session, host included
    rooms: int
    rates: Rates
    ramp_up: float  # clients per second over all processes; 0 = at once
    duration: float
    drain: float
    message_size: int
    processes: int
    seed: int

    def groups_of(self, process: int) -> list[int]:
        return list(range(process, self.sessions, self.processes))


def _worker(plan: Plan, process: int, results: multiprocessing.Queue[Any]) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(_work, plan, process, results)


async def _work(plan: Plan, process: int, results: multiprocessing.Queue[Any]) -> None:
    swarm = Swarm(
        plan.url,
        TrioSessions(),
        plan.groups_of(process),
        members=plan.participants,
        rooms=plan.rooms,
        message_size=plan.message_size,
        seed=plan.seed + process,
    )
    async with trio.open_nursery() as nursery:
        await swarm.connect(nursery, plan.ramp_up / plan.processes)
        results.put(("connected", process, swarm.setup))

        def progress(stats: Stats) -> None:
            results.put(("progress", process, stats))

        stats = await swarm.phase(plan.rates, plan.duration, drain=plan.drain, progress=progress)
        results.put(("done", process, swarm.setup, stats))
        nursery.cancel_scope.cancel()


def merged(parts: Iterable[Stats]) -> Stats:
    """One :class:`Stats` adding up what several load processes measured."""
    total = Stats()
    for part in parts:
        total.merge(part)
    return total


def scrape_metrics(url: str) -> dict[str, float] | None:
    """The server's ``/metrics`` samples, or ``None`` where it has none."""
    host, port, _ = split_url(url)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except (OSError, ValueError):
        return None
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                samples[name] = float(value)
            except ValueError:
                continue
    return samples


def run(plan: Plan, *, show_progress: bool = True) -> dict[str, Any]:
    """Run ``plan`` across its processes and return the report (see :func:`report`)."""
    before = scrape_metrics(plan.url)
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[Any] = context.Queue()
    workers = [
        context.Process(target=_worker, args=(plan, i, results), daemon=True)
        for i in range(plan.processes)
    ]
    for worker in workers:
        worker.start()
    clients = plan.sessions * plan.participants
    budget = (clients / plan.ramp_up if plan.ramp_up else 0) + CONNECT_TIMEOUT
    deadline = time.monotonic() + budget + plan.duration + plan.drain + 30
    setups: dict[int, Stats] = {}
    latest: dict[int, Stats] = {}
    done: set[int] = set()
    display = _Progress(plan, enabled=show_progress)
    with display:
        while len(done) < len(workers) and time.monotonic() < deadline:
            try:
                kind, process, *payload = results.get(timeout=0.5)
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    break
                continue
            if kind == "connected":
                setups[process] = payload[0]
            elif kind == "progress":
                latest[process] = payload[0]
            else:
                setups[process], latest[process] = payload
                done.add(process)
            display.update(setups, latest)
    for worker in workers:
        worker.join(timeout=5)
        if worker.is_alive():
            worker.kill()
    setup, stats = merged(setups.values()), merged(latest.values())
    setup.clients = clients  # including the share of a process that never reported
    missing = sorted(set(range(plan.processes)) - done)
    return report(plan, setup, stats, latest, missing, before, scrape_metrics(plan.url))


def report(
    plan: Plan,
    setup: Stats,
    stats: Stats,
    per_process: dict[int, Stats],
    missing: list[int],
    before: dict[str, float] | None,
    after: dict[str, float] | None,
) -> dict[str, Any]:
    """The run's figures plus a verdict naming what fell short, and why."""
    figures = stats.summary()
    connected = setup.summary()
    figures["clients"] = connected["clients"]
    figures["connect_ms"] = connected["connect_ms"]
    figures["errors"] = {**connected["errors"], **figures["errors"]}
    planned_rate = setup.connected * plan.rates.message_rate
    achieved_rate = stats.sent / plan.duration if plan.duration else 0.0
    cpu = {
        p: round(s.cpu_seconds / s.wall_seconds, 3)
        for p, s in per_process.items()
        if s.wall_seconds
    }
    figures["generator"] = {
        "processes": plan.processes,
        "cpu_share_per_process": cpu,
        "send_rate_planned": round(planned_rate, 1),
        "send_rate_achieved": round(achieved_rate, 1),
        "worst_send_lag_s": round(stats.send_lag, 3),
    }
    shortfalls = []
    if missing:
        shortfalls.append(f"load processes {missing} did not finish in time")
    if setup.connected < setup.clients:
        shortfalls.append(
            f"{setup.clients - setup.connected} of {setup.clients} clients did not join"
        )
    ratio = figures["messages"]["ratio"]
    if ratio is not None and ratio < 0.99:
        shortfalls.append(f"delivered {ratio:.1%} of the expected messages")
    p99 = figures["latency_ms"]["p99"]
    if p99 is not None and p99 > 100:
        shortfalls.append(f"p99 latency {p99:.0f} ms")
    generator_limited = any(share >= GENERATOR_CPU_LIMIT for share in cpu.values()) or (
        stats.send_lag > GENERATOR_LAG_LIMIT
    )
    if generator_limited:
        busiest = max(cpu.values(), default=0.0)
        shortfalls.append(
            f"the load generator was the limit (busiest process at {busiest:.0%} of a core, "
            f"senders up to {stats.send_lag:.2f} s late): give it more cores with --processes "
            "or lower the load; these figures do not show the server's limit"
        )
    elif shortfalls:
        shortfalls.append("the load generator kept up: the shortfall is the server's")
    figures["verdict"] = {"ok": not shortfalls, "shortfalls": shortfalls}
    figures["plan"] = attrs.asdict(plan)
    if after is not None:
        figures["server"] = {
            name.removeprefix("trio_sessions_"): value - (before or {}).get(name, 0)
            if name.endswith("_total")
            else value
            for name, value in after.items()
        }
    return figures


class _Progress:
    """A live line per second: clients, sent, delivered, ratio, p99 so far."""

    def __init__(self, plan: Plan, *, enabled: bool) -> None:
        self._plan = plan
        self._enabled = enabled and sys.stderr.isatty()
        self._live: Any = None

    def __enter__(self) -> _Progress:
        if self._enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, setups: dict[int, Stats], latest: dict[int, Stats]) -> None:
        if self._live is None:
            return
        from rich.table import Table

        setup, stats = merged(setups.values()), merged(latest.values())
        p99 = stats.percentile(0.99)
        table = Table(title=f"trio-sessions-load → {self._plan.url}")
        for column in ("clients", "elapsed", "sent", "delivered / expected", "p99", "errors"):
            table.add_column(column, justify="right")
        table.add_row(
            f"{setup.connected}/{self._plan.sessions * self._plan.participants}",
            f"{stats.wall_seconds:.0f}/{self._plan.duration:.0f} s",
            f"{stats.sent:,}",
            f"{stats.delivered:,} / {stats.expected:,}",
            "-" if p99 is None else f"{p99 * 1000:.1f} ms",
            str(sum(setup.errors.values()) + sum(stats.errors.values())),
        )
        self._live.update(table)


def print_report(figures: dict[str, Any]) -> None:
    """The report as a readable table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="trio-sessions-load report", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    messages, latency = figures["messages"], figures["latency_ms"]
    generator = figures["generator"]
    rows = [
        (
            "clients connected",
            f"{figures['clients']['connected']} of {figures['clients']['planned']}",
        ),
        ("connect time p50/p99/max", _ms(figures["connect_ms"], "p50", "p99", "max")),
        ("messages sent", f"{messages['sent']:,}"),
        ("delivered / expected", f"{messages['delivered']:,} / {messages['expected']:,}"),
        ("delivery ratio", "-" if messages["ratio"] is None else f"{messages['ratio']:.4f}"),
        ("delivered per second", f"{messages['delivered_per_s'] or 0:,.0f}"),
        ("latency p50/p90/p99/max", _ms(latency, "p50", "p90", "p99", "max")),
        ("state patches sent", f"{figures['patches']:,}"),
        (
            "drops / resumed replayed / snapshot",
            "{drops} / {replayed} / {snapshot}".format(**figures["resumes"]),
        ),
        ("errors", ", ".join(f"{k}: {v}" for k, v in figures["errors"].items()) or "none"),
        (
            "send rate planned / achieved",
            f"{generator['send_rate_planned']:,} / {generator['send_rate_achieved']:,} per s",
        ),
        (
            "load process CPU",
            ", ".join(f"{share:.0%}" for share in generator["cpu_share_per_process"].values()),
        ),
    ]
    if "server" in figures:
        server = figures["server"]
        rows.append(
            (
                "server /metrics",
                f"frames sent {server.get('frames_sent_total', 0):,.0f}, "
                f"received {server.get('frames_received_total', 0):,.0f}, "
                f"slow consumers {server.get('slow_consumers_total', 0):.0f}, "
                f"open connections {server.get('connections_open', 0):.0f}",
            )
        )
    else:
        rows.append(("server /metrics", "not available"))
    verdict = figures["verdict"]
    rows.append(("verdict", "ok" if verdict["ok"] else "\n".join(verdict["shortfalls"])))
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def _ms(figures: dict[str, float | None], *keys: str) -> str:
    return " / ".join("-" if figures[k] is None else f"{figures[k]:.1f}" for k in keys) + " ms"


def parse_args(argv: Sequence[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser = argparse.ArgumentParser(
        prog="trio-sessions-load",
        description="Load a running trio-sessions server and report delivery and latency.",
    )
    add = parser.add_argument
    add(
        "--url", default="ws://127.0.0.1:8765/ws", help="server WebSocket URL (default %(default)s)"
    )
    add("--sessions", type=int, default=10, help="sessions to open (default %(default)s)")
    add(
        "--participants",
        type=int,
        default=10,
        help="clients per session, host included (default %(default)s)",
    )
    add("--rooms", type=int, default=1, help="rooms per session (default %(default)s)")
    add(
        "--rate",
        type=float,
        default=1.0,
        help="room messages per second per client (default %(default)s)",
    )
    add(
        "--patch-rate",
        type=float,
        default=0.0,
        help="state patches per second per host (default %(default)s)",
    )
    add(
        "--churn",
        type=float,
        default=0.0,
        help="fraction of clients that drop and resume per minute (default %(default)s)",
    )
    add(
        "--ramp-up",
        type=float,
        default=500.0,
        help="clients connected per second, 0 for all at once (default %(default)s)",
    )
    add(
        "--duration",
        type=float,
        default=30.0,
        help="seconds of load after everyone joined (default %(default)s)",
    )
    add(
        "--drain",
        type=float,
        default=2.0,
        help="seconds to wait for late deliveries (default %(default)s)",
    )
    add(
        "--message-size",
        type=int,
        default=64,
        help="bytes of data per room message (default %(default)s)",
    )
    add(
        "--processes",
        type=int,
        default=cores,
        help="load processes (default: one per core, %(default)s)",
    )
    add("--seed", type=int, default=0)
    add("--json", metavar="FILE", help="also write the report as JSON to FILE")
    add("--no-progress", action="store_true", help="no live display")
    args = parser.parse_args(argv)
    clients = args.sessions * args.participants
    if not 1 <= clients <= MAX_CLIENTS or args.participants < 1:
        parser.error(f"sessions x participants must be 1..{MAX_CLIENTS}")
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION:.0f}]")
    if args.rooms < 1 or min(args.rate, args.patch_rate, args.churn, args.ramp_up) < 0:
        parser.error("--rooms must be >= 1 and rates >= 0")
    try:
        split_url(args.url)
    except ValueError as error:
        parser.error(str(error))
    plan = Plan(
        url=args.url,
        sessions=args.sessions,
        participants=args.participants,
        rooms=args.rooms,
        rates=Rates(args.rate, args.patch_rate, args.churn),
        ramp_up=args.ramp_up,
        duration=args.duration,
        drain=args.drain,
        message_size=args.message_size,
        processes=max(1, min(args.processes, args.sessions)),
        seed=args.seed,
    )
    return plan, args


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point; exits 1 when the run fell short (see the verdict)."""
    plan, args = parse_args(argv)
    figures = run(plan, show_progress=not args.no_progress)
    print_report(figures)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(figures, file, indent=2)
    sys.exit(0 if figures["verdict"]["ok"] else 1)
