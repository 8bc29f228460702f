"""Room fan-out at saturation: the highest send rate at which >= 99% of messages arrive with
p99 < 100 ms, then latency at half that rate. The same load generator for every server.

A rising step that fails is repeated once (after the server is idle again) before it counts,
so one scheduling hiccup on a shared virtual machine does not end a sweep early.
"""

from __future__ import annotations

import math
import re
import urllib.request
from collections.abc import Callable
from typing import Any

import trio

from .cgen.generator import CGenerator
from .generators import NodeGenerator, PythonGenerator
from .servers import Running

STEP = 3.0  # seconds per rate step
DRAIN = 1.5  # seconds for late deliveries after a step
FACTOR = 1.5  # rate multiplier between steps
REFINEMENTS = 3  # bisections after the first failure: the result is within 1.5 ** (1/8), 5%
START = 2_000  # deliveries per second of the first step
GENERATOR_BUSY = 0.9  # a generator busier than this (share of its core) may be the limit


# each makes the async context manager of one generator: (server, groups, members) -> it
GENERATORS: dict[str, Callable[[Running, int, int], Any]] = {
    "node": NodeGenerator,
    "python": PythonGenerator,
    "c": CGenerator,
}


async def sweep(
    server: Running,
    groups: int,
    members: int,
    generator: str,
    kind: Callable[[Running, int, int], Any] | None = None,
) -> dict[str, Any]:
    """Find the saturation rate of ``server`` for ``groups`` rooms of ``members``, with the
    generator named ``generator``, or made by ``kind`` (e.g. the C one on several servers)."""
    kind = kind or GENERATORS[generator]
    clients = groups * members
    async with kind(server, groups, members) as load:
        if load.connected < clients:
            return {"error": f"only {load.connected} of {clients} joined"}

        async def step(sends_per_s: float, duration: float = STEP) -> dict[str, Any]:
            cpu = server.cpu_seconds()
            # the server's CPU is read after the loaded period plus the drain, as a share of
            # the loaded period: the drain is when it catches up with what it was sent
            figures = await load.phase(sends_per_s / clients, duration, DRAIN)
            server_cpu = (server.cpu_seconds() - cpu) / duration
            expected, delivered = figures["expected"], figures["delivered"]
            p99 = figures["p99"]
            return {
                "sends_per_s": round(sends_per_s, 1),
                "delivered_per_s": round(delivered / duration),
                "ratio": round(delivered / expected, 4) if expected else 0,
                "p50_ms": None if figures["p50"] is None else round(figures["p50"], 2),
                "p99_ms": None if p99 is None else round(p99, 2),
                "server_cpu": round(server_cpu, 3),
                "generator_cpu": round(figures["cpu"], 3),
                "passed": bool(expected) and delivered >= 0.99 * expected and p99 < 100,
            }

        steps = []
        rate = START / (members - 1)
        best = failed = None
        while True:
            result = await step(rate)
            steps.append(result)
            if not result["passed"]:  # a single latency spike is not saturation: try once more
                await trio.to_thread.run_sync(server.wait_idle)
                result = await step(rate)
                steps.append(result)
            if not result["passed"]:
                failed = result
                break
            best = result
            rate *= FACTOR
        low, high = (best or {}).get("sends_per_s"), failed["sends_per_s"]
        for _ in range(REFINEMENTS if low else 0):  # bisect between last pass and first failure
            await trio.to_thread.run_sync(server.wait_idle)
            result = await step(math.sqrt(low * high))
            steps.append(result)
            if result["passed"]:
                best, low = result, result["sends_per_s"]
            else:
                high = result["sends_per_s"]
        half = None
        if best is not None:
            await trio.to_thread.run_sync(server.wait_idle)
            before = await trio.to_thread.run_sync(gc_pauses, server.url)
            half = await step(best["sends_per_s"] / 2, duration=2 * STEP)
            after = await trio.to_thread.run_sync(gc_pauses, server.url)
            if before is not None and after is not None:
                half["gc"] = _pauses_between(before, after)
    return {
        "generator": generator,
        "best": best,
        "half": half,
        "first_failure": failed,
        # at the failing step, was the load generator itself saturated?
        "generator_limited": failed is not None and failed["generator_cpu"] >= GENERATOR_BUSY,
        "steps": steps,
    }


_BUCKET = re.compile(r'^trio_sessions_gc_pause_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.M)


def metrics_text(url: str) -> str | None:
    """The ``/metrics`` page of the server at ``url`` (its WebSocket URL), ``None`` if it does
    not answer. Read on the public port: the benchmarks' servers run with
    ``--public-metrics true``."""
    http = url.replace("ws://", "http://").removesuffix("/ws") + "/metrics"
    try:
        with urllib.request.urlopen(http, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


def gc_pauses(url: str) -> dict[str, int] | None:
    """The server's collector-pause histogram (cumulative counts by bound), if it has one."""
    text = metrics_text(url)
    if text is None:
        return None
    found = dict(_BUCKET.findall(text))
    return {bound: int(float(count)) for bound, count in found.items()} or None


def _pauses_between(before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    """Collections during a phase: how many, how many over 20 ms, and the bound of the longest."""
    delta = {bound: after[bound] - before.get(bound, 0) for bound in after}
    total = delta.get("+Inf", 0)
    longest = next((b for b in delta if delta[b] == total), "+Inf") if total else None
    return {
        "collections": total,
        "over_20ms": total - delta.get("0.02", 0),
        "longest_at_most_s": longest,
    }
