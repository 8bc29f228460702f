"""2,000 simulated clients in 100 classrooms over one virtual hour, with drops and vanishing hosts.

A failure prints its seed; ``TRIO_SESSIONS_SCENARIO_SEED=<seed> pytest tests/test_scenario.py``
replays it exactly (pytest-trio makes Trio's scheduling deterministic, the simulation seeds it).
"""

from __future__ import annotations

import os

import trio.testing

from sim import open_simulation
from sim._classroom import ClassroomPlan, check, run_classroom, summary

SEED = int(os.environ.get("TRIO_SESSIONS_SCENARIO_SEED", "1"))


async def test_classroom_hour(autojump_clock) -> None:
    plan = ClassroomPlan(sessions=100, participants=19, duration=3600.0, seed=SEED)
    async with open_simulation(seed=SEED) as sim:
        run = await run_classroom(sim, plan)
        await trio.testing.wait_all_tasks_blocked()
        problems = check(run)
        assert not problems, (
            f"seed {SEED} (replay: TRIO_SESSIONS_SCENARIO_SEED={SEED}): "
            f"{len(problems)} violations, first: {problems[:10]}"
        )
        figures = summary(run)
        assert figures["clients"] == 2000 and figures["vanished_hosts"] == 3
        assert figures["events"] > 500_000  # the load really ran
        # nothing leaked: every session reaped, every connection closed
        assert sim.supervisor.statistics().live == 0
        assert sim.server.counters.open == 0
