"""``python -m sim``: the classroom scenario on the simulated network, its invariants and digest.

    python -m sim --clients 200 --minutes 60 --seed 3 --faults 0.1

Runs :func:`sim._classroom.run_classroom` (sessions of 1 host and 19 participants) on virtual
time, then prints the invariant report and a digest of every frame exchanged: the same seed
gives the same digest, in any process. Exits 1 when an invariant is violated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import trio
import trio.testing

from ._classroom import ClassroomPlan, check, run_classroom, summary
from ._simulation import open_simulation

PARTICIPANTS = 19  # per session, besides the host
VANISHING_SHARE = 0.03  # of hosts who leave for good, when there are faults


def plan_for(clients: int, minutes: float, seed: int, faults: float) -> ClassroomPlan:
    """The classroom plan for about ``clients`` clients (whole sessions of 20, at least one)."""
    sessions = max(1, clients // (PARTICIPANTS + 1))
    vanishing = max(1, round(sessions * VANISHING_SHARE)) if faults else 0
    return ClassroomPlan(
        sessions=sessions,
        participants=PARTICIPANTS,
        duration=minutes * 60.0,
        drop_fraction=faults,
        reload_fraction=faults,
        vanishing_hosts=min(vanishing, sessions),
        seed=seed,
    )


async def run(plan: ClassroomPlan) -> dict[str, Any]:
    """Run ``plan`` under a fresh simulation; returns the report."""
    async with open_simulation(seed=plan.seed) as sim:
        outcome = await run_classroom(sim, plan)
        await trio.testing.wait_all_tasks_blocked()
        problems = check(outcome)
        return {
            **summary(outcome),
            "virtual_s": trio.current_time(),
            "violations": len(problems),
            "first_violations": problems[:10],
            "leaked_sessions": sim.supervisor.statistics().live,
            "open_connections": sim.server.counters.open,
            "digest": sim.digest(),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="about this many (default 200)")
    parser.add_argument("--minutes", type=float, default=60.0, help="virtual minutes (60)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (0)")
    parser.add_argument(
        "--faults",
        type=float,
        default=0.1,
        help="share of participants whose link drops once and of hosts who reload once; "
        "with any, some hosts also vanish for good (0.1; 0 = none)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.faults <= 1:
        parser.error("--faults must be in [0, 1]")
    plan = plan_for(args.clients, args.minutes, args.seed, args.faults)
    report = trio.run(run, plan, clock=trio.testing.MockClock(autojump_threshold=0))
    for key, value in report.items():
        if key != "first_violations":
            print(f"{key}: {value}")
    for problem in report["first_violations"]:
        print(f"  violation: {problem}")
    print("invariants: " + ("all hold" if not report["violations"] else "VIOLATED"))
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
