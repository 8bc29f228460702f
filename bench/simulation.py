"""Simulation benchmark: the classroom scenario at 1,000 / 5,000 / 10,000 clients.

    python -m bench.simulation                     # 1k, 5k and 10k clients, 2 virtual hours
    python -m bench.simulation --clients 1000 --hours 2 --json results.json

Reports wall seconds, frames delivered to clients per wall second, wall and CPU microseconds
per frame, peak RSS, and whether every invariant held. Not a test: nothing here asserts a
speed. Runs without the simulation's frame digest (``record=False``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import trio
import trio.testing

from actors import Config
from sim import open_simulation
from sim._classroom import ClassroomPlan, check, run_classroom, summary

PARTICIPANTS = 19  # per session, plus the host: 20 clients a session
RECORD = False  # the frame digest: not part of what is measured


async def measure(clients: int, hours: float, seed: int) -> dict[str, object]:
    plan = ClassroomPlan(
        sessions=clients // (PARTICIPANTS + 1),
        participants=PARTICIPANTS,
        duration=hours * 3600.0,
        vanishing_hosts=max(1, clients // 700),
        seed=seed,
    )
    async with open_simulation(Config(), seed=seed, record=RECORD) as sim:
        started, cpu_started = time.perf_counter(), time.process_time()
        run = await run_classroom(sim, plan)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        await trio.testing.wait_all_tasks_blocked()
        figures = summary(run)
        return {
            "clients": figures["clients"],
            "virtual_hours": hours,
            "wall_s": round(wall, 1),
            "frames": figures["frames"],
            "frames_per_wall_s": round(figures["frames"] / wall),
            "wall_us_per_frame": round(wall / figures["frames"] * 1e6, 1),
            # CPU time of this process: less sensitive than wall time to a shared machine
            "cpu_us_per_frame": round(cpu / figures["frames"] * 1e6, 1),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "invariant_violations": len(check(run)),
            "leaked_sessions": sim.supervisor.statistics().live,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="*", default=[1000, 5000, 10000])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = []
    for clients in args.clients:
        clock = trio.testing.MockClock(autojump_threshold=0)
        result = trio.run(measure, clients, args.hours, args.seed, clock=clock)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.json:
        machine = {"python": platform.python_version(), "machine": platform.machine()}
        with open(args.json, "w") as out:
            json.dump({"machine": machine, "results": results}, out, indent=2)


if __name__ == "__main__":
    main()
