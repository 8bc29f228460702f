"""How a load client speaks to a server: trio-sessions here; the benchmarks add baselines.

A dialect joins a client to its group (a session, or a plain relay's room), frames an outgoing
room message, and picks delivered room messages out of received frames.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

import attrs
import orjson
import trio

from protocol import Reply, ResumeReply, SeatReply, decode_reply

from ._link import Link


class RequestFailed(Exception):
    """The server answered a request with an error ``code``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@attrs.define(eq=False)
class Group:
    """One session (or relay room) of the plan, shared by its members' clients."""

    index: int
    size: int
    rooms: int
    code: str = ""  # the session's join code, once its host created it
    connected: int = 0  # members that joined
    ready: trio.Event = attrs.Factory(trio.Event)


@attrs.define(eq=False)
class Seat:
    """What a client holds in its group: enough to resume after a drop."""

    token: str = ""
    epoch: str = ""
    last_seq: int = 0
    participant_id: str = ""
    resumed_seq: int = 0  # seq in the last resume reply (the resumer's own participantBack)


class Dialect(Protocol):
    """A server protocol, as the load clients need it."""

    name: str
    supports_resume: bool

    async def join(self, link: Link, group: Group, member: int, seat: Seat) -> None:
        """Bring a fresh link into ``group``; member 0 sets the group up first."""
        ...

    async def resume(self, link: Link, seat: Seat) -> bool:
        """Take the seat back on a new link; ``True`` if the missed events are replayed."""
        ...

    def message(self, group: int, room: int, data: str) -> str:
        """The frame that sends ``data`` to room number ``room`` of group number ``group``."""
        ...

    def patch(self, counter: int) -> str | None:
        """A state patch frame (hosts only), or ``None`` if the server has no state."""
        ...

    def deliveries(self, frames: list[str], seat: Seat, errors: Counter[str]) -> list[str]:
        """The ``data`` of each new room message in ``frames``; counts error replies by code."""
        ...


class TrioSessions:
    """The trio-sessions protocol (docs/protocol.md)."""

    name = "trio-sessions"
    supports_resume = True

    def __init__(self) -> None:
        self._refs = 0

    async def _request(self, link: Link, kind: str, **fields: Any) -> Reply:
        self._refs += 1
        ref = self._refs
        await link.send(orjson.dumps({"type": kind, "ref": ref, **fields}).decode())
        while True:
            frames = await link.receive_batch()
            for i, frame in enumerate(frames):
                message = orjson.loads(frame)
                if message.get("type") == "reply" and message.get("ref") == ref:
                    link.unread(frames[i + 1 :])  # events after the reply are the client's
                    if not message["ok"]:
                        raise RequestFailed(message["error"]["code"])
                    return decode_reply(kind, message["data"])

    async def join(self, link: Link, group: Group, member: int, seat: Seat) -> None:
        await self._request(link, "hello", name=f"load-{group.index}-{member}")
        if member == 0:
            reply = await self._request(link, "session:create")
            assert isinstance(reply, SeatReply)
            group.code = reply.code
            for room in range(group.rooms):
                await self._request(link, "session:createRoom", room=f"r{room}")
            group.ready.set()
        else:
            await group.ready.wait()
            reply = await self._request(link, "session:join", code=group.code)
            assert isinstance(reply, SeatReply)
        seat.token, seat.epoch, seat.last_seq = reply.resume_token, reply.epoch, reply.seq
        seat.participant_id = reply.participant_id

    async def resume(self, link: Link, seat: Seat) -> bool:
        await self._request(link, "hello", name="load-resume")
        reply = await self._request(
            link, "session:resume", token=seat.token, last_seq=seat.last_seq, epoch=seat.epoch
        )
        assert isinstance(reply, ResumeReply)
        seat.resumed_seq = reply.seq
        if not reply.recovered:
            seat.last_seq = reply.seq
        return reply.recovered

    def message(self, group: int, room: int, data: str) -> str:
        return orjson.dumps({"type": "room:message", "room": f"r{room}", "data": data}).decode()

    def patch(self, counter: int) -> str | None:
        return orjson.dumps({"type": "state:patch", "patch": {"load": counter}}).decode()

    def deliveries(self, frames: list[str], seat: Seat, errors: Counter[str]) -> list[str]:
        out = []
        for frame in frames:
            message = orjson.loads(frame)
            seq = message.get("seq")
            if seq is not None:
                if seq <= seat.last_seq:
                    continue  # already seen (a replay overlapping what arrived live)
                seat.last_seq = seq
                # a replay includes what this client itself sent while away: not a delivery
                if message["type"] == "room:message" and message["from"] != seat.participant_id:
                    out.append(message["data"])
            elif message.get("ok") is False:
                errors[message["error"]["code"]] += 1
        return out
