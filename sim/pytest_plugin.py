"""pytest fixtures for simulations. Enable with ``pytest_plugins = ["sim.pytest_plugin"]``.

A test that uses ``simulation`` must also take ``autojump_clock`` (pytest-trio picks the clock
from the test's own arguments)::

    async def test_classroom(simulation, autojump_clock):
        async with simulation.client("host") as host:
            code = (await host.create_session()).code
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._simulation import Simulation, open_simulation


@pytest.fixture
def simulation_seed() -> int:
    """The seed of the ``simulation`` fixture; override it to explore other runs."""
    return 0


@pytest.fixture
async def simulation(simulation_seed: int) -> AsyncIterator[Simulation]:
    """The real server on a simulated network, with default limits."""
    async with open_simulation(seed=simulation_seed) as sim:
        yield sim
