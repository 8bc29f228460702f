"""A running server on a simulated network, and clients for it.

A run is reproducible from its seed alone, in pytest or in a plain ``trio.run``: the seed drives
Trio's scheduling tie-breaks (:func:`seed_scheduler`), every random choice of the server (codes,
ids, token secrets, epochs: ``Environment.simulated``), every client's reconnect jitter, and the
display clock (a fixed epoch plus Trio's virtual clock). :meth:`Simulation.digest` sums up every
frame that crossed the network, with its virtual time, to compare two runs.
"""

from __future__ import annotations

import gc
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from functools import partial
from typing import Final

import attrs
import trio

from actors import Config, Environment, Supervisor
from client import Backoff, Client, ClientEvent, connect
from server import Server, serve

from ._network import Network

GC_THRESHOLD: Final = 100_000  # allocations between young collections during a simulation


def seed_scheduler(seed: int) -> None:
    """Make Trio's scheduling tie-breaks deterministic and seed them, so a run repeats exactly.

    Trio breaks ties between tasks that become runnable together at random. It draws from a
    module-level ``random.Random`` and, only when the module flag
    ``_ALLOW_DETERMINISTIC_SCHEDULING`` is set, first sorts each batch by task creation order,
    so that the seeded generator decides alone. Hypothesis' plugin and pytest-trio set that flag
    on import; this sets it too, so that a plain ``trio.run`` is just as repeatable. The flag
    stays on for the rest of the process (its cost is one sort per scheduler batch);
    :func:`open_simulation` restores it on exit.
    """
    run_module = trio._core._run
    setattr(run_module, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 (a Final)
    run_module._r.seed(seed)


@contextmanager
def _quiet_gc() -> Iterator[None]:
    """Freeze the heap as it is and make young collections rare, for the simulation's length.

    A simulation allocates many short-lived objects and keeps many long-lived ones (thousands
    of clients, tasks, channels): with the default thresholds the cyclic GC keeps rescanning
    the long-lived ones, which took a fifth or more of the time at 10,000 clients.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


@contextmanager
def _deterministic_scheduling(seed: int) -> Iterator[None]:
    run_module = trio._core._run
    before = run_module._ALLOW_DETERMINISTIC_SCHEDULING
    seed_scheduler(seed)
    try:
        yield
    finally:
        setattr(run_module, "_ALLOW_DETERMINISTIC_SCHEDULING", before)  # noqa: B010


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
        on_event: Callable[[ClientEvent], None] | None = None,
    ) -> AbstractAsyncContextManager[Client]:
        """Connect a :class:`client.Client` as ``client_id`` (``async with sim.client("a") as c``).

        Its backoff jitter is seeded from the simulation's seed and the id (a ``backoff`` passed
        in keeps its delays and limits, and gets that seeded generator too). ``on_event``: see
        :func:`client.connect`.
        """
        rng = random.Random(f"{self.seed}:{client_id}")
        backoff = Backoff(rng=rng) if backoff is None else attrs.evolve(backoff, rng=rng)
        opener = self.network.opener(client_id)
        return connect(opener, token=token, name=name, backoff=backoff, on_event=on_event)

    def crash(self, code: str) -> None:
        """Make the session's actor raise, as a bug would."""
        handle = self.supervisor.lookup(code)
        if handle is None:
            raise LookupError(f"no live session {code}")
        handle.inject_fault()

    def digest(self) -> str:
        """A hex digest of every frame sent and received by every client so far, each with its
        virtual time and client id: two runs with the same digest exchanged the same frames at
        the same moments."""
        return self.network.digest()


@asynccontextmanager
async def open_simulation(
    config: Config | None = None, *, seed: int = 0, record: bool = True
) -> AsyncIterator[Simulation]:
    """Run the server on a fresh :class:`Network` until the block exits.

    Run it under ``MockClock(autojump_threshold=0)`` (pytest-trio's ``autojump_clock``), and keep
    real I/O out of the block: the clock jumps whenever every task waits. The run is fully
    determined by ``seed`` and what the block does (see the module docstring). ``record=False``
    skips the frame digest (a few percent of a benchmark's time). While it runs, the heap as
    it was is frozen (``gc.freeze()``) and young collections are rare (``GC_THRESHOLD``).
    """
    with _deterministic_scheduling(seed), _quiet_gc():
        config = config or Config()
        network = Network(config.send_buffer_size, record=record)
        async with trio.open_nursery() as nursery:
            env = Environment.simulated(seed)
            server = await nursery.start(partial(serve, config, accept=network.serve, env=env))
            try:
                yield Simulation(server, network, seed)
            finally:
                nursery.cancel_scope.cancel()
