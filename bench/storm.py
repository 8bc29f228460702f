"""Reconnect storm: every client drops at once and resumes; nothing may be lost.

Hosts patch their session's state throughout, so every client should see every event seq of
its session: the check is that, after the storm, each client holds an unbroken run of seqs
from its join to the session's last event (its own ``participantBack`` is the one event a
resumer is not sent; the resume reply's ``seq`` accounts for it).
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import orjson
import trio

from load import Group, Link, LinkClosed, Seat, TrioSessions

from .servers import Running

MEMBERS = 50
PATCH_EVERY = 0.5  # seconds, per host
JITTER = 1.0  # seconds: each client waits uniformly up to this before reconnecting


class _Member:
    def __init__(self, group: Group, index: int) -> None:
        self.group = group
        self.index = index
        self.seat = Seat()
        self.dialect = TrioSessions()
        self.link: Link | None = None
        self.seen: set[int] = set()
        self.first = 0
        self.back = trio.Event()

    async def read(self) -> None:
        while True:
            link = self.link
            if link is None:
                await self.back.wait()
                continue
            try:
                frames = await link.receive_batch()
            except LinkClosed:
                if self.link is link:
                    self.link = None
                continue
            for frame in frames:
                seq = orjson.loads(frame).get("seq")
                if seq is not None:
                    self.seen.add(seq)


async def storm(server: Running, clients: int = 2000) -> dict[str, Any]:
    groups = [Group(i, MEMBERS, 1) for i in range(clients // MEMBERS)]
    members = [_Member(g, i) for g in groups for i in range(MEMBERS)]
    rng = random.Random(7)
    resumed: list[float] = []
    replayed = 0
    async with trio.open_nursery() as nursery:
        limiter = trio.CapacityLimiter(200)

        async def join(member: _Member) -> None:
            async with limiter:
                member.link = await Link.open(server.url)
                await member.dialect.join(member.link, member.group, member.index, member.seat)
            member.first = member.seat.last_seq
            nursery.start_soon(member.read)

        async with trio.open_nursery() as joining:
            for member in members:
                joining.start_soon(join, member)

        async def patch(host: _Member) -> None:
            counter = 0
            while True:
                await trio.sleep(PATCH_EVERY)
                if host.link is not None:
                    counter += 1
                    patch = orjson.dumps({"type": "state:patch", "patch": {"n": counter}})
                    with contextlib.suppress(LinkClosed):
                        await host.link.send(patch.decode())

        for member in members[::MEMBERS]:
            nursery.start_soon(patch, member)
        await trio.sleep(2)
        start = trio.current_time()
        for member in members:  # everyone vanishes at once
            link, member.link = member.link, None
            member.back = trio.Event()
            await link.abort()

        async def come_back(member: _Member) -> None:
            nonlocal replayed
            await trio.sleep(rng.random() * JITTER)
            link = await Link.open(server.url)
            recovered = await member.dialect.resume(link, member.seat)
            member.seen.add(member.seat.resumed_seq)  # its own participantBack, never sent to it
            replayed += recovered
            member.link = link
            member.back.set()
            resumed.append(trio.current_time() - start)

        async with trio.open_nursery() as returning:
            for member in members:
                returning.start_soon(come_back, member)
        all_back = trio.current_time() - start
        await trio.sleep(3)  # patches keep coming; then everything must have arrived
        nursery.cancel_scope.cancel()
    lost = 0
    for group_members in (members[i : i + MEMBERS] for i in range(0, len(members), MEMBERS)):
        last = max(max(m.seen, default=0) for m in group_members)
        for member in group_members:
            expected = set(range(member.first + 1, last + 1))
            lost += len(expected - member.seen)
    return {
        "clients": clients,
        "all_back_s": round(all_back, 2),
        "p50_back_s": round(sorted(resumed)[len(resumed) // 2], 2),
        "replayed": replayed,
        "events_missing": lost,
    }
