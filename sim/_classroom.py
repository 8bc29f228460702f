"""The classroom scenario: many quiet sessions with drops, reloads and hosts who vanish.

Each session has a host who patches the state every ``patch_interval`` and participants who
each send a room message every ``message_interval`` on average. Some participants drop once
and come back, some hosts reload their page once, and ``vanishing_hosts`` hosts leave and never
return. At ``duration`` the remaining hosts close their sessions. Every client records what it
saw; :func:`check` then states the guarantees as invariants.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import attrs
import trio

from client import ClientEvent, ConnectionEvent, ConnectionLost, ConnectionState, RequestError
from protocol import Event, SessionClosed, StateUpdated

from ._simulation import Simulation


@attrs.frozen(kw_only=True)
class ClassroomPlan:
    """What the scenario does. Durations are virtual seconds."""

    sessions: int = 100
    participants: int = 19  # per session, besides the host
    duration: float = 3600.0
    message_interval: float = 180.0  # mean time between a participant's messages
    patch_interval: float = 60.0  # time between the host's state patches
    drop_fraction: float = 0.1  # participants whose link drops once
    reload_fraction: float = 0.1  # hosts whose page reloads once
    vanishing_hosts: int = 3  # hosts who leave mid-way and never return
    seed: int = 0


@attrs.define
class Observer:
    """What one client saw."""

    client_id: str
    session: str = ""
    joined_seq: int = 0
    seqs: list[int] = attrs.Factory(list)  # seqs of events received, in arrival order
    accounted: set[int] = attrs.Factory(set)  # seqs learnt from replies (own messages, returns)
    versions: list[int] = attrs.Factory(list)  # state versions, in arrival order
    closed_seq: int | None = None
    closed_at: float | None = None
    closed_reason: str | None = None
    continuity_lost: bool = False  # a resume fell back to a snapshot
    lost: bool = False  # the client gave up
    left: bool = False  # a host that left for good mid-way
    frames: int = 0
    done: trio.Event = attrs.Factory(trio.Event)  # its session closed, or it gave up

    def see(self, event: ClientEvent) -> None:
        """Record one event (the client's ``on_event``: called in its reader task)."""
        if self.done.is_set():
            return
        if isinstance(event, ConnectionEvent):
            if event.state is ConnectionState.RESUMED:
                if event.recovered:
                    self.accounted.add(event.seq or 0)
                else:
                    self.continuity_lost = True
            elif event.state is ConnectionState.LOST:
                self.lost = True
                self.done.set()
        elif isinstance(event, Event):
            self.seqs.append(event.seq)
            if isinstance(event, StateUpdated):
                self.versions.append(event.version)
            elif isinstance(event, SessionClosed):
                self.closed_seq = event.seq
                self.closed_at = trio.current_time()
                self.closed_reason = event.reason
                self.done.set()


@attrs.define
class ClassroomRun:
    """The observations of one run."""

    plan: ClassroomPlan
    observers: list[Observer] = attrs.Factory(list)
    vanished_at: dict[str, float] = attrs.Factory(dict)  # session code -> when its host left
    host_grace: float = 0.0

    @property
    def frames(self) -> int:
        """Frames the clients received (events, replies, pongs)."""
        return sum(o.frames for o in self.observers)


async def _until_done(observer: Observer, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` (the client's activity) once its session closed or it gave up."""
    await observer.done.wait()
    scope.cancel()


async def _participant(
    sim: Simulation, plan: ClassroomPlan, code: str, client_id: str, run: ClassroomRun
) -> None:
    rng = random.Random(f"{plan.seed}:{client_id}")
    observer = Observer(client_id, session=code)
    run.observers.append(observer)
    drop_at = rng.uniform(0, plan.duration) if rng.random() < plan.drop_fraction else None
    async with sim.client(client_id, name=client_id, on_event=observer.see) as client:
        observer.joined_seq = (await client.join(code)).seq
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_done, observer, nursery.cancel_scope)
            while True:
                wake = trio.current_time() + rng.expovariate(1.0 / plan.message_interval)
                if drop_at is not None and drop_at < wake:
                    await trio.sleep_until(drop_at)
                    sim.network.drop(client_id)
                    drop_at = None
                    continue
                await trio.sleep_until(wake)
                try:
                    observer.accounted.add(await client.send("chat", {"from": client_id}))
                except ConnectionLost:
                    continue  # applied or not: if it was, the replay shows it
                except RequestError:
                    break  # the session is closing
        observer.frames = client.frames_received


async def _host(
    sim: Simulation,
    plan: ClassroomPlan,
    index: int,
    run: ClassroomRun,
    vanish: bool,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    client_id = f"h{index}"
    rng = random.Random(f"{plan.seed}:{client_id}")
    observer = Observer(client_id)
    run.observers.append(observer)
    reload_at = rng.uniform(0, plan.duration) if rng.random() < plan.reload_fraction else None
    leave_at = rng.uniform(0.3, 0.6) * plan.duration if vanish else None
    token = f"host-{plan.seed}-{index}"
    async with sim.client(client_id, name=client_id, token=token, on_event=observer.see) as client:
        created = await client.create_session(state={"tick": 0})
        observer.session, observer.joined_seq = created.code, created.seq
        await client.create_room("chat", kind="chat")
        task_status.started(created.code)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_done, observer, nursery.cancel_scope)
            tick = 0
            while (now := trio.current_time()) < plan.duration:
                wake = min(now + plan.patch_interval, plan.duration)
                for at, act in ((reload_at, "reload"), (leave_at, "leave")):
                    if at is not None and at < wake:
                        await trio.sleep_until(at)
                        if act == "leave":  # close the tab: the link ends, never to return
                            run.vanished_at[observer.session] = trio.current_time()
                            observer.left = True
                            observer.frames = client.frames_received
                            nursery.cancel_scope.cancel()
                            return
                        sim.network.drop(client_id)
                        reload_at = None
                        break
                else:
                    await trio.sleep_until(wake)
                    if trio.current_time() < plan.duration:
                        tick += 1
                        with contextlib.suppress(ConnectionLost):  # applied or not: see events
                            await client.patch_state({"tick": tick})
            await client.close()
        observer.frames = client.frames_received


async def run_classroom(sim: Simulation, plan: ClassroomPlan) -> ClassroomRun:
    """Run the scenario on ``sim`` to the end; returns what every client saw."""
    run = ClassroomRun(plan, host_grace=sim.server.config.host_grace)
    vanishing = set(random.Random(plan.seed).sample(range(plan.sessions), plan.vanishing_hosts))
    async with trio.open_nursery() as nursery:
        for index in range(plan.sessions):
            code = await nursery.start(_host, sim, plan, index, run, index in vanishing)
            for p in range(plan.participants):
                nursery.start_soon(_participant, sim, plan, code, f"s{index}p{p}", run)
    return run


def check(run: ClassroomRun, *, final_time_slack: float = 1e-6) -> list[str]:
    """The scenario's invariants; returns the violations (empty when all hold)."""
    problems: list[str] = []
    for o in run.observers:
        if o.left:
            continue
        if o.lost or o.continuity_lost:
            problems.append(f"{o.client_id}: lost={o.lost} continuity_lost={o.continuity_lost}")
            continue
        if o.closed_seq is None:
            problems.append(f"{o.client_id}: never saw its session close")
            continue
        if o.seqs != sorted(o.seqs) or len(set(o.seqs)) != len(o.seqs):
            problems.append(f"{o.client_id}: events out of order or repeated")
        seen = set(o.seqs) | o.accounted
        expected = set(range(o.joined_seq + 1, o.closed_seq + 1))
        if seen != expected:
            missing = sorted(expected - seen)[:5]
            extra = sorted(seen - expected)[:5]
            problems.append(f"{o.client_id}: missing seqs {missing}, unexpected {extra}")
        first = o.versions[0] if o.versions else 0
        if o.versions != list(range(first, first + len(o.versions))):
            problems.append(f"{o.client_id}: state versions not in order: {o.versions[:10]}")
        vanished = run.vanished_at.get(o.session)
        if vanished is not None:
            due = vanished + run.host_grace
            if (
                o.closed_reason != "host_timeout"
                or abs((o.closed_at or 0) - due) > final_time_slack
            ):
                problems.append(
                    f"{o.client_id}: closed with {o.closed_reason} at {o.closed_at}, due at {due}"
                )
        elif o.closed_reason != "manual_stop":
            problems.append(f"{o.client_id}: closed with {o.closed_reason}")
    return problems


def summary(run: ClassroomRun) -> dict[str, Any]:
    """Counts for reports."""
    return {
        "clients": len(run.observers),
        "frames": run.frames,
        "events": sum(len(o.seqs) for o in run.observers),
        "resumes": sum(len(o.accounted) for o in run.observers),
        "vanished_hosts": len(run.vanished_at),
    }
