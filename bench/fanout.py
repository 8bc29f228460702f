"""Room fan-out at saturation: the highest send rate at which >= 99% of messages arrive with
p99 < 100 ms, then latency at half that rate. One load generator for every server.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from load import Rates, Swarm

from .servers import Running

STEP = 3.0  # seconds per rate step
DRAIN = 1.0  # seconds for late deliveries after a step
FACTOR = 1.5  # rate multiplier between steps
START = 2_000  # deliveries per second of the first step
GENERATOR_BUSY = 0.9  # a load process busier than this may be the limit


def passed(stats: Any) -> bool:
    p99 = stats.percentile(0.99)
    return bool(stats.expected) and stats.delivered >= 0.99 * stats.expected and p99 < 0.1


async def sweep(server: Running, groups: int, members: int) -> dict[str, Any]:
    """Find the saturation rate of ``server`` for ``groups`` rooms of ``members``."""
    swarm = Swarm(server.url, server.target.dialect(), list(range(groups)), members=members)
    clients = groups * members
    async with trio.open_nursery() as nursery:
        await swarm.connect(nursery, ramp_up=2000)
        if swarm.setup.connected < clients:
            nursery.cancel_scope.cancel()
            return {"error": f"only {swarm.setup.connected} of {clients} joined"}

        async def step(sends_per_s: float, duration: float = STEP) -> dict[str, Any]:
            cpu = server.cpu_seconds()
            stats = await swarm.phase(Rates(sends_per_s / clients), duration, drain=0)
            server_cpu = (server.cpu_seconds() - cpu) / duration
            await trio.sleep(DRAIN)  # late deliveries still count: the phase is still current
            return {
                "sends_per_s": round(sends_per_s, 1),
                "delivered_per_s": round(stats.delivered / duration),
                "ratio": round(stats.delivered / stats.expected, 4) if stats.expected else 0,
                "p50_ms": round((stats.percentile(0.5) or math.nan) * 1000, 2),
                "p99_ms": round((stats.percentile(0.99) or math.nan) * 1000, 2),
                "server_cpu": round(server_cpu, 3),
                "generator_cpu": round(stats.cpu_seconds / duration, 3),
                "passed": passed(stats),
            }

        steps = []
        rate = START / (members - 1)
        best = failed = None
        while True:
            result = await step(rate)
            steps.append(result)
            if not result["passed"]:
                failed = result
                break
            best = result
            rate *= FACTOR
        if best is not None:  # one refinement between the last pass and the first failure
            await trio.to_thread.run_sync(server.wait_idle)
            result = await step(math.sqrt(best["sends_per_s"] * failed["sends_per_s"]))
            steps.append(result)
            if result["passed"]:
                best = result
        half = None
        if best is not None:
            await trio.to_thread.run_sync(server.wait_idle)
            half = await step(best["sends_per_s"] / 2, duration=2 * STEP)
        nursery.cancel_scope.cancel()
    return {
        "best": best,
        "half": half,
        "first_failure": failed,
        # at the failing step, was the load generator itself saturated?
        "generator_limited": failed is not None and failed["generator_cpu"] >= GENERATOR_BUSY,
        "steps": steps,
    }
