"""Relaying: a client on one node seated in a session another node owns, over Redis pub/sub.

Two sides, both in every node:

- **origin** (the node the client is connected to): :class:`RemoteSession` stands in for the
  session's :class:`actors.SessionHandle`. The router sends it commands as it would to a local
  actor; they go to the owner as ``cmd``/``gone`` operations. Frames come back as ``f``
  (one frame, the connections it goes to), the end of each command as ``done`` (with the seat
  it gave), and ended seats as ``ended``.
- **owner** (the node whose actor runs the session): a :class:`RemotePeer` stands in for each
  remote connection, so the actor delivers to it as to a local one.

Each direction between two incarnations is a :class:`NodeLink`: operations queue without
blocking (bounded in bytes) and one task publishes them, in order, as numbered batches on the
destination's channel (``ts:{db}:relay:{node}:{fence}``). Pub/sub delivers each publisher's messages
in order but drops them while a subscriber is disconnected; a gap in the numbers (or a failed
publish, or a Redis outage) *resets* the link: every connection relayed through it is closed
with 1012 on its own node and its seats go into their grace on the owner, so clients resume
(getting what they missed by replay) instead of silently missing events.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs
import orjson
import trio

from actors import Command, Message, Peer, PeerGone, SessionHandle
from protocol import (
    CloseCode,
    ErrorCode,
    ProtocolError,
    Ref,
    Reply,
    SessionJoin,
    decode_request,
    encode,
    encode_error,
    encode_reply,
    unstructure,
)

from ._redis import REDIS_ERRORS

if TYPE_CHECKING:
    import coredis

    from actors import Supervisor

    from ._membership import Membership

logger = logging.getLogger(__name__)

LINK_BUDGET: Final = 32 * 1024 * 1024  # bytes queued on one link before it counts as broken
BATCH_BYTES: Final = 1024 * 1024  # bytes one published batch carries at most (about)

Incarnation = tuple[str, int]  # node id, fencing token


class LocalPeer(Peer, Protocol):
    """A connection of this node, as the origin side needs it."""

    def close_link(self, code: int, reason: str) -> None: ...


# ---------------------------------------------------------------------------- links


class NodeLink:
    """Operations to one incarnation, published in order as numbered batches."""

    def __init__(
        self, redis: coredis.Redis[bytes], source: Incarnation, generation: int, channel: str
    ) -> None:
        self._redis = redis
        self._header = [*source, generation]  # who sends, and the link's generation
        self.channel = channel
        self._ops: list[list[Any]] = []
        self._bytes = 0
        self._seq = 0
        self._last_frame: str | None = None  # the frame of the last "f" operation queued
        self._wake = trio.Event()
        self.broken = False
        self._overflowed = False  # broken because the destination does not keep up
        self.published = 0  # batches

    def send(self, op: list[Any], size: int) -> bool:
        """Queue ``op`` (``size`` bytes, about); ``False`` once the link is broken."""
        if self.broken:
            return False
        if self._bytes + size > LINK_BUDGET:
            self._overflowed = True
            self.close()
            return False
        self._ops.append(op)
        self._bytes += size
        self._last_frame = None
        self._wake.set()
        return True

    def send_frame(self, connection_id: str, frame: str) -> bool:
        """Queue a frame for one connection; a fan-out of one frame is one operation."""
        if self._last_frame is frame:  # the same event to one more member over there
            self._ops[-1][2].append(connection_id)
            self._bytes += len(connection_id) + 3
            return True
        if not self.send(["f", frame, [connection_id]], len(frame) + len(connection_id) + 12):
            return False
        self._last_frame = frame
        return True

    def close(self) -> None:
        """Publish nothing more; the task ends."""
        self.broken = True
        self._wake.set()

    async def run(self, on_failure: Callable[[], None]) -> None:
        """Publish what is queued, batch after batch, until closed. ``on_failure()`` when
        operations were lost (a failed publish, or more queued than ``LINK_BUDGET``)."""
        while not self.broken:
            await self._wake.wait()
            # One scheduler pass more: the tasks runnable now (the actor's fan-out, the reply,
            # the end of the command) queue theirs too, and one publish carries them all.
            await trio.lowlevel.checkpoint()
            self._wake = trio.Event()
            if self._overflowed:
                logger.warning("cluster: relay to %s over its budget", self.channel)
                on_failure()
                return
            while self._ops and not self.broken:
                batch = self._take()
                self._seq += 1
                payload = orjson.dumps([*self._header, self._seq, batch])
                try:
                    await self._redis.publish(self.channel, payload)
                except REDIS_ERRORS as error:
                    logger.warning("cluster: relay to %s failed (%s)", self.channel, error)
                    self.close()
                    on_failure()
                    return
                self.published += 1

    def _take(self) -> list[list[Any]]:
        taken, size = 0, 0
        while taken < len(self._ops) and size < BATCH_BYTES:
            op = self._ops[taken]
            size += len(op[1]) if op[0] == "f" else 64
            taken += 1
        batch, self._ops = self._ops[:taken], self._ops[taken:]
        self._bytes = max(0, self._bytes - size) if self._ops else 0
        self._last_frame = None
        return batch


# ---------------------------------------------------------------------------- origin side


@attrs.define(eq=False)
class RemoteSession(SessionHandle):
    """A session another node owns, as this node's router sees it: what it is sent goes over
    the link to the owner. Its inbox is never used."""

    owner: Incarnation = ("", 0)
    relay: Relay | None = None

    async def send(self, message: Message) -> None:
        await trio.lowlevel.checkpoint()
        if self.relay is None or not self.relay.forward(self, message):
            raise trio.BrokenResourceError(f"session {self.code}: its node is unreachable")


@attrs.define(eq=False)
class _Relayed:
    """A local connection seated (or asking) in sessions other nodes own."""

    peer: LocalPeer
    pending: collections.deque[tuple[Incarnation, Command]] = attrs.Factory(collections.deque)
    seats: dict[str, Incarnation] = attrs.Factory(dict)  # code -> its owner

    def relies_on(self, node: Incarnation) -> bool:
        """Whether a seat or an unanswered command of this connection is with ``node``."""
        return node in self.seats.values() or any(owner == node for owner, _ in self.pending)


# ---------------------------------------------------------------------------- owner side


class RemotePeer:
    """A connection of another node, as the actors of this node see it (``actors.Peer``)."""

    __slots__ = (
        "anonymous",
        "connection_id",
        "link",
        "name",
        "on_done",
        "on_idle",
        "origin",
        "pending",
        "seats",
        "user_id",
    )

    def __init__(
        self,
        link: NodeLink,
        origin: Incarnation,
        connection_id: str,
        identity: tuple[str, str, bool],
        on_done: Callable[[RemotePeer, str, str | None], None],
        on_idle: Callable[[RemotePeer], None],
    ) -> None:
        self.link = link
        self.origin = origin
        self.connection_id = connection_id
        self.user_id, self.name, self.anonymous = identity
        self.on_done = on_done
        self.on_idle = on_idle
        # (code, command) sent to this node's actors and not yet done: a connection's commands
        # are answered in order (its own node's router waits before switching sessions)
        self.pending: collections.deque[tuple[str, Command]] = collections.deque()
        self.seats: dict[str, str] = {}  # code -> participant id held there

    def deliver(self, frame: str) -> bool:
        return self.link.send_frame(self.connection_id, frame)

    def reply(self, ref: Ref, data: Reply) -> None:
        if ref is not None:
            self.deliver(encode_reply(ref, data))

    def reply_error(self, ref: Ref, error: ProtocolError) -> None:
        self.deliver(encode_error(ref, error))

    def command_done(self) -> None:
        code, command = self.pending.popleft()
        self.on_done(self, code, command.seat)

    def seat_ended(self, code: str, reason: str, close: CloseCode | None = None) -> None:
        if self.seats.pop(code, None) is not None:
            self.link.send(["ended", self.connection_id, code, reason, close], 64 + len(reason))
            self.on_idle(self)

    def seat_granted(self, session: SessionHandle, participant_id: str) -> bool:
        return False  # live sessions seat guardians connected to their own node only


# ---------------------------------------------------------------------------- the relay


class Relay:
    """Both sides of relaying for one node (see the module docstring)."""

    def __init__(self, membership: Membership, supervisor: Supervisor) -> None:
        self._membership = membership
        self._redis = membership.redis
        self._supervisor = supervisor
        self._nursery: trio.Nursery | None = None
        self._links: dict[tuple[Incarnation, Incarnation], NodeLink] = {}  # (from, to) -> link
        # per other incarnation: the generation of this node's link to it (a reset starts a new
        # one), and of its link to this node with the number of the last batch received
        self._generation: dict[Incarnation, int] = {}
        self._received: dict[Incarnation, tuple[int, int]] = {}  # (generation, batch)
        self._gone: set[Incarnation] = set()  # incarnations known dead: nothing is sent there
        self._relayed: dict[str, _Relayed] = {}  # connection id -> it (origin side)
        self._remote: dict[tuple[Incarnation, str], RemotePeer] = {}  # owner side
        self.resets = 0

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive what other nodes relay to this incarnation's channel, forever (after each
        new registration, on the new channel)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            status: trio.TaskStatus[None] | None = task_status
            while True:
                membership = self._membership
                async with trio.open_nursery() as watch:  # until this incarnation is replaced
                    watch.start_soon(_cancel_when, membership.incarnation_changed, watch)
                    try:
                        async with self._redis.pubsub(channels=[membership.channel]) as pubsub:
                            if status is not None:
                                status.started()
                                status = None
                            async for message in pubsub:
                                data = message["data"]
                                if message["type"] == "message" and isinstance(data, bytes):
                                    await self._receive(data)
                    except REDIS_ERRORS as error:
                        logger.warning("cluster: relay subscription lost (%s)", error)
                        self.reset_all()
                        await trio.sleep(membership.lease_ttl / 3)
                    watch.cancel_scope.cancel()

    def _own(self, to: Incarnation) -> tuple[Incarnation, Incarnation]:
        return (self._membership.node_id, self._membership.fence), to

    def _link(self, to: Incarnation) -> NodeLink:
        key = self._own(to)
        link = self._links.get(key)
        if link is not None and link.broken:  # it lost operations: the other side must know
            self.reset(to)
            link = None
        if link is None:
            generation = self._generation.setdefault(to, 1)
            link = self._links[key] = NodeLink(
                self._redis, key[0], generation, self._membership.channel_of(to)
            )
            assert self._nursery is not None
            self._nursery.start_soon(link.run, partial(self._link_failed, to, link))
        return link

    def _link_failed(self, to: Incarnation, link: NodeLink) -> None:
        if self._links.get(self._own(to)) is link:
            self.reset(to)

    # ------------------------------------------------------------------ origin side

    def session(self, code: str, owner: Incarnation) -> RemoteSession:
        """A stand-in for ``code``, owned by ``owner`` (a router keeps it in its seat)."""
        send, _ = trio.open_memory_channel[Message](0)
        return RemoteSession(code, "", send, owner=owner, relay=self)

    def forward(self, remote: RemoteSession, message: Message) -> bool:
        """Send ``message`` (from this node's router) to the owner of ``remote``; ``False`` if
        it cannot go (its node is gone: a command fails, a ``PeerGone`` has nobody to tell)."""
        if remote.owner in self._gone:
            return isinstance(message, PeerGone)
        link = self._link(remote.owner)
        if isinstance(message, Command):
            peer = message.peer
            relayed = self._relayed.get(peer.connection_id)
            if relayed is None:
                relayed = self._relayed[peer.connection_id] = _Relayed(peer)  # type: ignore[arg-type]
            request = message.request
            frame = encode({"type": request.TYPE, **unstructure(request)})
            op = [
                "cmd",
                peer.connection_id,
                peer.user_id,
                peer.name,
                peer.anonymous,
                remote.code,
                message.participant_id,
                message.ref,
                frame,
            ]
            if not link.send(op, len(frame) + 128):
                return False
            relayed.pending.append((remote.owner, message))
            return True
        if isinstance(message, PeerGone):
            relayed = self._relayed.get(message.peer.connection_id)
            if relayed is not None:
                relayed.seats.pop(remote.code, None)
                self._forget_if_idle(relayed)
            op = ["gone", message.peer.connection_id, remote.code, message.participant_id]
            return link.send(op, 128)
        return False  # operators' messages reach the owner through its own admin API

    def _forget_if_idle(self, relayed: _Relayed) -> None:
        if not relayed.pending and not relayed.seats:
            self._relayed.pop(relayed.peer.connection_id, None)

    def _at_origin(self, op: list[Any]) -> None:
        kind = op[0]
        if kind == "f":
            _, frame, connections = op
            for connection_id in connections:
                relayed = self._relayed.get(connection_id)
                if relayed is not None:
                    relayed.peer.deliver(frame)
        elif kind == "done":
            _, connection_id, code, seat, owner = op
            relayed = self._relayed.get(connection_id)
            if relayed is None or not relayed.pending:
                return
            _, command = relayed.pending.popleft()
            command.answered = True
            command.seat = seat
            if seat is not None:
                relayed.seats[code] = (owner[0], owner[1])
            relayed.peer.command_done()
            self._forget_if_idle(relayed)
        elif kind == "ended":
            _, connection_id, code, reason, close = op
            relayed = self._relayed.get(connection_id)
            if relayed is not None:
                relayed.seats.pop(code, None)
                relayed.peer.seat_ended(code, reason, None if close is None else CloseCode(close))
                self._forget_if_idle(relayed)

    # ------------------------------------------------------------------ owner side

    async def _at_owner(self, source: Incarnation, op: list[Any]) -> None:
        kind = op[0]
        if kind == "cmd":
            _, connection_id, user_id, name, anonymous, code, participant_id, ref, frame = op
            peer = self._remote.get((source, connection_id))
            if peer is None:
                identity = (user_id, name, anonymous)
                peer = RemotePeer(
                    self._link(source),
                    source,
                    connection_id,
                    identity,
                    self._done,
                    self._forget_remote_if_idle,
                )
                self._remote[(source, connection_id)] = peer
            await self._serve(peer, code, participant_id, ref, frame)
        elif kind == "gone":
            _, connection_id, code, participant_id = op
            peer = self._remote.get((source, connection_id))
            if peer is None:
                return
            peer.seats.pop(code, None)
            await self._tell(code, PeerGone(peer, participant_id))
            self._forget_remote_if_idle(peer)

    async def _serve(
        self, peer: RemotePeer, code: str, participant_id: str | None, ref: Ref, frame: str
    ) -> None:
        """Run one relayed command in the local actor of ``code``; answer ``done`` after it."""
        _, request = decode_request(frame)
        handle = self._supervisor.lookup(code)
        if isinstance(request, ProtocolError) or handle is None:
            if not isinstance(request, ProtocolError):
                missing = isinstance(request, SessionJoin)
                request = ProtocolError(
                    ErrorCode.NOT_FOUND if missing else ErrorCode.SESSION_CLOSED,
                    f"no live session {code!r}" if missing else f"session {code} has ended",
                )
            peer.reply_error(ref, request)
            self._done(peer, code, None)
            return
        command = Command(peer, ref, request, participant_id)
        peer.pending.append((code, command))
        try:
            await handle.send(command)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            peer.pending.pop()
            closed = ProtocolError(ErrorCode.SESSION_CLOSED, f"session {code} has ended")
            peer.reply_error(ref, closed)
            self._done(peer, code, None)

    def _done(self, peer: RemotePeer, code: str, seat: str | None) -> None:
        if seat is not None:
            peer.seats[code] = seat
        me = [self._membership.node_id, self._membership.fence]
        peer.link.send(["done", peer.connection_id, code, seat, me], 96)
        self._forget_remote_if_idle(peer)

    def _forget_remote_if_idle(self, peer: RemotePeer) -> None:
        if (
            not peer.seats
            and not peer.pending
            and self._remote.get((peer.origin, peer.connection_id)) is peer
        ):
            del self._remote[(peer.origin, peer.connection_id)]

    async def _tell(self, code: str, message: Message) -> None:
        handle = self._supervisor.lookup(code)
        if handle is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await handle.send(message)

    # ------------------------------------------------------------------ receiving, resets

    async def _receive(self, payload: bytes) -> None:
        """One batch from another incarnation. A batch of a new generation means the sender
        reset its side: this side forgets what it had with the sender too. A gap within a
        generation means batches were lost: this side resets (a new generation of its own
        link, which tells the sender to do the same, once)."""
        node, fence, generation, seq, ops = orjson.loads(payload)
        source = (node, fence)
        if source in self._gone:
            return  # a node that lost its lease (it registers anew, and resets its side)
        last_generation, last_seq = self._received.get(source, (generation, seq - 1))
        if generation < last_generation:
            return  # sent before the sender's reset; what it refers to is gone
        if generation > last_generation:
            self._forget(source)
        elif seq <= last_seq:
            logger.warning("cluster: relay batch %d from %s:%s again; dropped", seq, node, fence)
            return
        elif seq != last_seq + 1:
            logger.warning(
                "cluster: relay batches %d-%d from %s:%s lost", last_seq + 1, seq - 1, node, fence
            )
            self.reset(source)
        self._received[source] = (generation, seq)
        for op in ops:
            if op[0] in ("cmd", "gone"):
                await self._at_owner(source, op)
            else:
                self._at_origin(op)

    def gone(self, node: Incarnation) -> None:
        """``node``'s lease expired: reset, and send nothing there any more (once per node)."""
        if node in self._gone:
            return
        self._gone.add(node)
        logger.warning("cluster: node %s (incarnation %d) is gone", *node)
        self.reset(node)

    def reset(self, node: Incarnation) -> None:
        """The link with ``node`` lost operations, or ``node`` is gone: forget what this side
        had with it, and start a new generation of the link to it."""
        self.resets += 1
        logger.warning("cluster: relay with %s (incarnation %d) reset", *node)
        self._forget(node)
        link = self._links.pop(self._own(node), None)
        if link is not None:
            link.close()  # what it still holds refers to what was just forgotten
        self._generation[node] = self._generation.get(node, 1) + 1

    def _forget(self, node: Incarnation) -> None:
        """Close every local connection relayed to ``node`` (1012, so they resume) and put the
        seats its connections held here into their grace. The link to ``node`` stays: its
        generation and numbering go on (what it still carries is ignored over there)."""
        for relayed in list(self._relayed.values()):
            if relayed.relies_on(node):
                del self._relayed[relayed.peer.connection_id]
                relayed.peer.close_link(
                    CloseCode.SERVICE_RESTART, "a session's node is unreachable"
                )
        gone = [peer for key, peer in self._remote.items() if key[0] == node]
        for peer in gone:
            del self._remote[(peer.origin, peer.connection_id)]
        if gone and self._nursery is not None:
            self._nursery.start_soon(self._release, gone)

    def reset_all(self) -> None:
        """Redis was unavailable: no link can be trusted to have lost nothing."""
        nodes = self.incarnations()
        for node in nodes:
            self.reset(node)
        for link in self._links.values():  # those of an earlier incarnation of this node
            link.close()
        self._links.clear()

    async def _release(self, peers: list[RemotePeer]) -> None:
        for peer in peers:
            for code, participant_id in list(peer.seats.items()):
                await self._tell(code, PeerGone(peer, participant_id))

    def incarnations(self) -> set[Incarnation]:
        """The other incarnations this node has links with."""
        return {key[1] for key in self._links} | {peer.origin for peer in self._remote.values()}

    def statistics(self) -> dict[str, int]:
        """Counters for metrics and the cluster view."""
        return {
            "relayed_connections": len(self._relayed),
            "remote_peers": len(self._remote),
            "links": len(self._links),
            "batches_published": sum(link.published for link in self._links.values()),
            "resets": self.resets,
        }


async def _cancel_when(event: trio.Event, nursery: trio.Nursery) -> None:
    await event.wait()
    nursery.cancel_scope.cancel()
