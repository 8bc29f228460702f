"""A swarm of load clients in one Trio run: connect them, then drive measured phases.

Each client is one task (its reader) plus a sender task: no per-message tasks, no unbounded
queues. Clients of a group all belong to this process, so the sender's clock stamp is read
against the same clock on delivery. Sent data is ``"<phase>|<send time>|<padding>"``;
deliveries from an earlier phase are ignored, so each phase is measured on its own.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Final

import attrs
import trio

from client import LinkClosed

from ._dialects import Dialect, Group, RequestFailed, Seat
from ._link import Link
from ._stats import Stats

CONNECT_TIMEOUT: Final = 30.0  # seconds for one client's connect and join
MAX_BEHIND: Final = 1.0  # a sender this late skips ahead instead of bursting


@attrs.frozen
class Rates:
    """What the clients do during a phase."""

    message_rate: float = 1.0  # room messages per second, per client
    patch_rate: float = 0.0  # state patches per second, per host
    churn: float = 0.0  # fraction of clients that drop and resume, per minute


class _Client:
    def __init__(self, swarm: Swarm, group: Group, member: int) -> None:
        self.swarm = swarm
        self.group = group
        self.member = member
        self.seat = Seat()
        self.link: Link | None = None
        self.dropping = False

    async def run(self) -> None:
        joined = await self._join()
        self.swarm.settle()
        if not joined:
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_loop, False)
            if self.member == 0 and self.swarm.dialect.patch(0) is not None:
                nursery.start_soon(self._send_loop, True)
            await self._read_loop()
            nursery.cancel_scope.cancel()

    async def _join(self) -> bool:
        swarm = self.swarm
        start = trio.current_time()
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                self.link = await Link.open(swarm.url)
                await swarm.dialect.join(self.link, self.group, self.member, self.seat)
        except (OSError, LinkClosed, RequestFailed, trio.TooSlowError) as error:
            swarm.setup.errors[_error_name(error)] += 1
            if self.member == 0:
                self.group.ready.set()  # let the members fail on an empty code, not hang
            return False
        swarm.setup.connected += 1
        swarm.setup.connect_seconds.append(trio.current_time() - start)
        self.group.connected += 1
        swarm.clients.append(self)
        return True

    async def _read_loop(self) -> None:
        swarm = self.swarm
        deliveries = swarm.dialect.deliveries
        while self.link is not None:
            try:
                frames = await self.link.receive_batch()
            except LinkClosed as closed:
                if not self.dropping:
                    swarm.stats.errors[f"close {closed.code}"] += 1
                    return
                await self._resume()
                continue
            now = trio.current_time()
            stats = swarm.stats
            phase = swarm.phase_tag
            for data in deliveries(frames, self.seat, stats.errors):
                tag, _, rest = data.partition("|")
                if tag == phase:
                    stats.delivered += 1
                    stats.record_latency(now - float(rest.partition("|")[0]))

    async def _resume(self) -> None:
        swarm = self.swarm
        self.link = None
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                link = await Link.open(swarm.url)
                replayed = await swarm.dialect.resume(link, self.seat)
        except (OSError, LinkClosed, RequestFailed, trio.TooSlowError) as error:
            swarm.stats.errors["resume: " + _error_name(error)] += 1
            return
        if replayed:
            swarm.stats.resumes_replayed += 1
        else:
            swarm.stats.resumes_snapshot += 1
        self.link = link
        self.dropping = False

    async def drop(self) -> None:
        """Vanish abruptly; the reader reconnects and resumes."""
        if self.link is not None and not self.dropping:
            self.dropping = True
            self.swarm.stats.drops += 1
            await self.link.abort()

    async def _send_loop(self, patches: bool) -> None:
        swarm = self.swarm
        counter = 0
        next_at = math.inf
        while True:
            rate = swarm.rates.patch_rate if patches else swarm.rates.message_rate
            if rate <= 0:
                await swarm.rates_changed.wait()
                next_at = math.inf
                continue
            now = trio.current_time()
            if next_at == math.inf:
                next_at = now + swarm.random.random() / rate  # spread the clients out
            with trio.move_on_at(next_at) as wait:
                await swarm.rates_changed.wait()
            if not wait.cancelled_caught:
                next_at = math.inf  # the rates changed: pick a new schedule
                continue
            stats = swarm.stats
            now = trio.current_time()
            stats.send_lag = max(stats.send_lag, now - next_at)
            next_at = max(next_at + 1 / rate, now - MAX_BEHIND)
            link = self.link
            if link is None or self.dropping:
                continue
            try:
                if patches:
                    counter += 1
                    await link.send(swarm.dialect.patch(counter) or "")
                    stats.patches += 1
                else:
                    data = f"{swarm.phase_tag}|{now!r}|{swarm.padding}"
                    room = swarm.random.randrange(self.group.rooms)
                    await link.send(swarm.dialect.message(self.group.index, room, data))
                    stats.sent += 1
                    stats.expected += self.group.connected - 1
            except LinkClosed:
                continue  # the reader notices and reports it


def _error_name(error: BaseException) -> str:
    if isinstance(error, RequestFailed):
        return error.code
    if isinstance(error, LinkClosed):
        return f"close {error.code}"
    if isinstance(error, trio.TooSlowError):
        return "connect timeout"
    return type(error).__name__


class Swarm:
    """Clients for ``groups`` of ``members`` each, against ``url`` in ``dialect``."""

    def __init__(
        self,
        url: str,
        dialect: Dialect,
        groups: list[int],
        *,
        members: int,
        rooms: int = 1,
        message_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.url = url
        self.dialect = dialect
        self.groups = [Group(index, members, rooms) for index in groups]
        self.padding = "x" * max(0, message_size - 24)
        self.random = random.Random(seed)
        self.clients: list[_Client] = []
        self.setup = Stats(clients=len(groups) * members)
        self.stats = Stats()
        self.phase_tag = "0"
        self.rates = Rates(message_rate=0.0)
        self.rates_changed = trio.Event()
        self._settled = 0
        self._all_settled = trio.Event()

    def settle(self) -> None:
        """A client has joined or failed to."""
        self._settled += 1
        if self._settled == self.setup.clients:
            self._all_settled.set()

    async def connect(self, nursery: trio.Nursery, ramp_up: float) -> None:
        """Start every client in ``nursery``, ``ramp_up`` per second (0: as fast as they can).

        Returns once each has joined its group or failed to.
        """
        start = trio.current_time()
        count = 0
        for group in self.groups:
            for member in range(group.size):
                if ramp_up > 0:
                    await trio.sleep_until(start + count / ramp_up)
                client = _Client(self, group, member)
                nursery.start_soon(client.run)
                count += 1
        await self._all_settled.wait()

    def set_rates(self, rates: Rates) -> None:
        self.rates = rates
        self.rates_changed.set()
        self.rates_changed = trio.Event()

    async def phase(
        self,
        rates: Rates,
        duration: float,
        *,
        drain: float = 1.0,
        progress: Callable[[Stats], None] | None = None,
        progress_every: float = 0.5,
    ) -> Stats:
        """Run ``rates`` for ``duration`` seconds, then wait ``drain`` for late deliveries."""
        self.stats = stats = Stats(clients=len(self.clients))
        self.phase_tag = str(int(self.phase_tag) + 1)
        cpu = time.process_time()
        start = trio.current_time()
        self.set_rates(rates)
        async with trio.open_nursery() as nursery:
            if rates.churn > 0 and self.dialect.supports_resume:
                nursery.start_soon(self._churn, rates.churn)
            end = start + duration
            while trio.current_time() < end:
                await trio.sleep_until(min(end, trio.current_time() + progress_every))
                stats.wall_seconds = trio.current_time() - start
                stats.cpu_seconds = time.process_time() - cpu
                if progress is not None:
                    progress(stats)
            nursery.cancel_scope.cancel()
        stats.wall_seconds = duration
        stats.cpu_seconds = time.process_time() - cpu  # while loaded, not while draining
        self.set_rates(Rates(message_rate=0.0))
        await trio.sleep(drain)
        return stats

    async def _churn(self, per_minute: float) -> None:
        debt = 0.0
        while True:
            await trio.sleep(1.0)
            debt += per_minute / 60 * len(self.clients)
            while debt >= 1:
                debt -= 1
                await self.random.choice(self.clients).drop()
