"""The classroom scenario: 1 host and 19 participants per session, with drops, reloads and
hosts who vanish, checked against its invariants (sim/_classroom.py).

A small seeded run (200 clients, 20 virtual minutes, a few seconds) is part of the fast suite;
the 2,000-client hour is marked ``slow`` (``pytest -m "not slow"`` skips it). A failure prints
its seed; ``TRIO_SESSIONS_SCENARIO_SEED=<seed> pytest tests/test_scenario.py`` replays it
exactly (the simulation makes Trio's scheduling deterministic and seeds it).
"""

from __future__ import annotations

import os

import pytest
import trio.testing

from sim import open_simulation
from sim._classroom import ClassroomPlan, check, run_classroom, summary

SEED = int(os.environ.get("TRIO_SESSIONS_SCENARIO_SEED", "1"))


async def run_and_check(plan: ClassroomPlan) -> dict[str, int]:
    async with open_simulation(seed=plan.seed) as sim:
        run = await run_classroom(sim, plan)
        await trio.testing.wait_all_tasks_blocked()
        problems = check(run)
        assert not problems, (
            f"seed {plan.seed} (replay: TRIO_SESSIONS_SCENARIO_SEED={plan.seed}): "
            f"{len(problems)} violations, first: {problems[:10]}"
        )
        # nothing leaked: every session reaped, every connection closed
        assert sim.supervisor.statistics().live == 0
        assert sim.server.counters.open == 0
        return summary(run)


async def test_classroom_small(autojump_clock) -> None:
    plan = ClassroomPlan(
        sessions=10,
        participants=19,
        duration=1200.0,
        drop_fraction=0.2,
        reload_fraction=0.2,
        vanishing_hosts=1,
        seed=SEED,
    )
    figures = await run_and_check(plan)
    assert figures["clients"] == 200 and figures["vanished_hosts"] == 1
    assert figures["events"] > 20_000 and figures["resumes"] > 0  # the load and faults ran


@pytest.mark.slow
async def test_classroom_hour(autojump_clock) -> None:
    plan = ClassroomPlan(sessions=100, participants=19, duration=3600.0, seed=SEED)
    figures = await run_and_check(plan)
    assert figures["clients"] == 2000 and figures["vanished_hosts"] == 3
    assert figures["events"] > 500_000  # the load really ran
