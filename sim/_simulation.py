"""A running server on a simulated network, and clients for it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial

import attrs
import trio

from actors import Config, Environment, Supervisor
from client import Backoff, Client, connect
from server import Server, serve

from ._network import Network


def seed_scheduler(seed: int) -> None:
    """Seed Trio's scheduling tie-breaks, so a run repeats exactly.

    It takes effect where deterministic scheduling is on, as under pytest-trio (which turns it
    on through the same hook Hypothesis uses).
    """
    trio._core._run._r.seed(seed)


@attrs.define
class Simulation:
    """The real server (supervisor, actors, connections, protocol) on an in-memory network."""

    server: Server
    network: Network
    seed: int

    @property
    def supervisor(self) -> Supervisor:
        return self.server.supervisor

    def client(
        self,
        client_id: str,
        *,
        token: str | None = None,
        name: str | None = None,
        backoff: Backoff | None = None,
    ) -> AbstractAsyncContextManager[Client]:
        """Connect a :class:`client.Client` as ``client_id`` (``async with sim.client("a") as c``).

        Its backoff jitter is seeded from the simulation's seed and the id.
        """
        backoff = backoff or Backoff(rng=random.Random(f"{self.seed}:{client_id}"))
        return connect(self.network.opener(client_id), token=token, name=name, backoff=backoff)

    def crash(self, code: str) -> None:
        """Make the session's actor raise, as a bug would."""
        handle = self.supervisor.lookup(code)
        if handle is None:
            raise LookupError(f"no live session {code}")
        handle.inject_fault()


@asynccontextmanager
async def open_simulation(
    config: Config | None = None, *, seed: int = 0
) -> AsyncIterator[Simulation]:
    """Run the server on a fresh :class:`Network` until the block exits.

    Run it under ``MockClock(autojump_threshold=0)`` (pytest-trio's ``autojump_clock``), and keep
    real I/O out of the block: the clock jumps whenever every task waits.
    """
    seed_scheduler(seed)
    config = config or Config()
    network = Network(config.send_buffer_size)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(serve, config, accept=network.serve, env=Environment.simulated(seed))
        )
        try:
            yield Simulation(server, network, seed)
        finally:
            nursery.cancel_scope.cancel()
