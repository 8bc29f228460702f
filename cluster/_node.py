"""One node of a cluster, as the server runs it: ``open_cluster`` for the parts that outlive the
sessions (Redis client, lease, shared store), :class:`ClusterNode` for the parts that need the
supervisor (relay, takeover, lookups of sessions owned elsewhere)."""

from __future__ import annotations

import logging
import os
import socket
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from protocol import ErrorCode, ProtocolError

from . import _keys as keys
from ._membership import Membership
from ._redis import REDIS_ERRORS, database_of, redis_client
from ._relay import Relay
from ._store import RedisStore
from ._takeover import Takeover

if TYPE_CHECKING:
    from actors import Config, Environment, SessionHandle, Supervisor

logger = logging.getLogger(__name__)

STOP_FLUSH: Final = 5.0  # seconds a clean stop waits for the store's last batch


def _unavailable(why: str) -> ProtocolError:
    return ProtocolError(ErrorCode.UNAVAILABLE, why, retry_after_ms=1000)


class ClusterError(Exception):
    """The cluster cannot be joined at start-up (Redis unreachable); the message says why."""


@attrs.define
class Cluster:
    """What ``open_cluster`` yields: the node's membership and the shared store."""

    membership: Membership
    store: RedisStore
    node: ClusterNode | None = None  # once the server runs one

    def fenced(self, code: str) -> None:
        """A write of ``code`` was refused: another node owns it now; stop serving it."""
        logger.warning("cluster: a write of session %s was fenced off: another node owns it", code)
        if self.node is not None:
            self.node.relinquish_soon(code)


@asynccontextmanager
async def open_cluster(config: Config, env: Environment) -> AsyncIterator[Cluster]:
    """Join the cluster at ``config.cluster`` for the lifetime of the block.

    Raises:
        ClusterError: Redis does not answer at start-up.
    """
    node_id = config.node_id or f"{socket.gethostname()}-{os.getpid()}"
    async with redis_client(config.cluster) as redis:
        database = database_of(config.cluster)
        membership = Membership(redis, database, node_id, "", config.lease_ttl, env)
        try:
            await membership.register()
        except REDIS_ERRORS as error:
            where = urllib.parse.urlparse(config.cluster)  # no password in the message
            raise ClusterError(
                f"cannot reach the cluster's Redis at {where.hostname}:{where.port or 6379}: "
                f"{error}"
            ) from None
        store = RedisStore(
            membership,
            durable=config.durability == "strict",
            tail_limit=config.event_log_size,
            history_retention=config.history_retention,
        )
        cluster = Cluster(membership, store)
        store.on_fenced = cluster.fenced
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.run_writer)
            try:
                yield cluster
            finally:
                with trio.move_on_after(STOP_FLUSH, shield=True):
                    await store.flush()
                with trio.CancelScope(shield=True):
                    await _resign(membership)
                nursery.cancel_scope.cancel()


async def _resign(membership: Membership) -> None:
    """A clean stop: give up the lease at once, so the others take the sessions over now."""
    with trio.move_on_after(2.0):
        try:
            await membership.redis.register_script(keys.RESIGN)(
                [keys.lease(membership.node_id)], [membership.fence]
            )
        except REDIS_ERRORS as error:
            logger.warning("cluster: could not give up the lease (%s)", error)


class ClusterNode:
    """Relay, takeover and the directory lookups of one running node."""

    def __init__(self, cluster: Cluster, supervisor: Supervisor, config: Config) -> None:
        self.cluster = cluster
        self.membership = cluster.membership
        self.supervisor = supervisor
        self.relay = Relay(self.membership, supervisor)
        self.takeover = Takeover(
            self.membership, supervisor, self.relay, strict=config.durability == "strict"
        )
        self._code_length = config.code_length
        self._nursery: trio.Nursery | None = None
        cluster.node = self

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay, keep the lease and codes, take dead nodes' sessions over; until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.relay.run)
            nursery.start_soon(
                self.membership.keep_lease, self.takeover.keep_own, self.relay.reset_all
            )
            nursery.start_soon(self.membership.reserve_codes, self._code_length)
            nursery.start_soon(self.takeover.watch)
            task_status.started()

    async def advertise(self, url: str) -> None:
        """Record this node's public address for the cluster view."""
        self.membership.url = url
        try:
            await self.membership.redis.hset(keys.ADDRESSES, {self.membership.node_id: url})
        except REDIS_ERRORS as error:
            logger.warning("cluster: could not advertise %s (%s)", url, error)

    def relinquish_soon(self, code: str) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self.supervisor.relinquish, code)

    async def locate(self, code: str, *, claim: bool = True) -> SessionHandle | None:
        """The session ``code`` if another node owns it (a relay stand-in), or if its owner is
        dead (taken over now); ``None`` if there is no such session. ``unavailable`` while
        Redis is, or while the cluster recovers from losing its data (it may not know yet)."""
        try:
            entry = await self.membership.redis.hmget(keys.directory(code), ["owner", "fence"])
            owner, fence = entry
            if owner is None or fence is None:
                if self.membership.settling():
                    raise _unavailable("the cluster is recovering; retry")
                return None
            incarnation = (owner.decode(), int(fence))
            if incarnation == (self.membership.node_id, self.membership.fence):
                return None  # reserved here and not (or no longer) a session
            lease = await self.membership.redis.get(keys.lease(incarnation[0]))
        except REDIS_ERRORS:
            raise _unavailable("the cluster's Redis is unavailable; retry") from None
        if lease is not None and int(lease) == incarnation[1]:
            return self.relay.session(code, incarnation)
        if not claim:
            return None  # a code reserved by a dead node, never a session
        if self.membership.settling():  # its node may be re-registering: let it reclaim first
            raise _unavailable("the cluster is recovering; retry")
        claimed = await self.takeover.claim(code, incarnation)
        if claimed is None:  # another node was quicker: ask the directory again, once
            return await self.locate(code, claim=False)
        return claimed

    async def view(self) -> dict[str, Any]:
        """The cluster as the admin API shows it: every registered node, alive or not, with the
        sessions it owns."""
        redis = self.membership.redis
        registered = await redis.hgetall(keys.NODES)
        addresses = await redis.hgetall(keys.ADDRESSES)
        nodes = []
        for raw_node, raw_fence in sorted(registered.items()):
            node, fence = raw_node.decode(), int(raw_fence)
            lease = await redis.get(keys.lease(node))
            address = addresses.get(raw_node)
            nodes.append(
                {
                    "node_id": node,
                    "incarnation": fence,
                    "alive": lease is not None and int(lease) == fence,
                    "url": address.decode() if address else None,
                    "sessions": await redis.scard(keys.owned(node, fence)),
                    "this_node": (node, fence) == (self.membership.node_id, self.membership.fence),
                }
            )
        return {
            "node_id": self.membership.node_id,
            "redis_available": self.membership.available,
            "sessions": sum(node["sessions"] for node in nodes if node["alive"]),
            "nodes": nodes,
            "relay": self.relay.statistics(),
            "taken_over": self.takeover.claimed,
        }

    def statistics(self) -> dict[str, int]:
        """What ``/metrics`` shows of the cluster (read at scrape time, no Redis call)."""
        return {
            "redis_available": int(self.membership.available),
            "incarnation": self.membership.fence,
            "sessions_taken_over": self.takeover.claimed,
            **self.relay.statistics(),
        }
