"""Run a plan: one Trio load process per share of the sessions, progress and results over a queue.

The parent starts the processes, shows progress, merges what they measured and scrapes the
server's ``/metrics`` before and after.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import time
import urllib.request
from typing import Any

import trio

from ._dialects import TrioSessions
from ._display import Progress, merged
from ._options import Plan
from ._report import report
from ._stats import Stats
from ._swarm import CONNECT_TIMEOUT, Swarm


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


def scrape_metrics(url: str) -> dict[str, float] | None:
    """The samples at ``url`` (a server's ``/metrics``), or ``None`` where it has none. Sends
    ``TRIO_SESSIONS_ADMIN_TOKEN`` as the bearer token when it is set."""
    token = os.environ.get("TRIO_SESSIONS_ADMIN_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=2) as response:
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
    before = scrape_metrics(plan.metrics_url)
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
    display = Progress(plan, enabled=show_progress)
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
    return report(plan, setup, stats, latest, missing, before, scrape_metrics(plan.metrics_url))
