"""Taking over the sessions of a node whose lease expired, and keeping one's own after a lost
lease.

Every node watches the registered incarnations (``ts:nodes``) every quarter of the lease TTL.
One whose lease is gone, or holds another token (the node restarted), is dead: each survivor
claims its sessions in batches (``CLAIM``: atomic, so each session gets exactly one new owner,
under the claimer's fencing token) and restores them hibernating, as after a restart. The
epoch is kept only in strict durability with a stored tail that reaches the record (nothing
any client saw can be missing); otherwise it changes and clients resume from a snapshot.
"""

from __future__ import annotations

import logging
import math
import random
from typing import TYPE_CHECKING, Any, Final

import trio

from actors import Loaded, SessionHandle

from . import _keys as keys
from ._redis import REDIS_ERRORS
from ._store import stored_session

if TYPE_CHECKING:
    from actors import Supervisor

    from ._membership import Membership
    from ._relay import Incarnation, Relay

logger = logging.getLogger(__name__)

CLAIM_BATCH: Final = 64  # sessions claimed per script call


class Takeover:
    """Finds dead incarnations and claims their sessions for this node."""

    def __init__(
        self, membership: Membership, supervisor: Supervisor, relay: Relay, *, strict: bool
    ) -> None:
        self._membership = membership
        self._redis = membership.redis
        self._supervisor = supervisor
        self._relay = relay
        self._strict = strict
        self._claim = self._redis.register_script(keys.CLAIM)
        self._reclaim = self._redis.register_script(keys.RECLAIM)
        self.claimed = 0  # sessions taken over by this node

    async def watch(self) -> None:
        """Look for dead incarnations every quarter of the lease TTL, forever."""
        ttl = self._membership.lease_ttl
        while True:
            await trio.sleep(ttl / 4 * random.uniform(0.8, 1.2))
            if not self._membership.available or self._membership.settling():
                continue  # let live nodes reclaim their own sessions first
            try:
                dead, alive = await self.incarnations()
                for incarnation in dead:
                    await self.take_over(incarnation, share_among=alive)
            except REDIS_ERRORS as error:
                logger.warning("cluster: takeover scan failed (%s)", error)

    async def incarnations(self) -> tuple[list[Incarnation], int]:
        """The incarnations whose lease is gone or taken by a newer one, and how many nodes
        are alive (this one included)."""
        registered = await self._redis.hgetall(keys.NODES)
        me = (self._membership.node_id, self._membership.fence)
        known = {(node.decode(), int(fence)) for node, fence in registered.items()}
        # and those this node relays to or for, which may be gone from ts:nodes already (the
        # others took their sessions over first), so that the relayed connections are reset
        nodes = sorted((known | self._relay.incarnations()) - {me})
        if not nodes:
            return [], 1
        leases = await self._redis.mget([keys.lease(node) for node, _ in nodes])
        dead = [
            node
            for node, lease in zip(nodes, leases, strict=True)
            if lease is None or int(lease) != node[1]
        ]
        return dead, 1 + len(nodes) - len(dead)

    async def take_over(self, dead: Incarnation, *, share_among: int = 1) -> None:
        """Claim ``dead``'s sessions: this node's share of what is left (the others claim
        theirs beside it, each in its own scan), or all of it with ``share_among=1``."""
        self._relay.gone(dead)
        node, fence = dead
        owned = keys.owned(node, fence)
        share = math.ceil(await self._redis.scard(owned) / share_among)
        claimed = 0
        while True:
            found = await self._claim_batch(dead)
            if found:
                claimed += self._restore(found)
            if claimed >= share or (not found and not await self._redis.scard(owned)):
                break
        if claimed:
            self.claimed += claimed
            logger.warning(
                "cluster: took over %d sessions of node %s (incarnation %d)", claimed, node, fence
            )

    async def _claim_batch(self, dead: Incarnation, code: str | None = None) -> Any:
        """Claim a batch of ``dead``'s sessions (or just ``code``); what ``CLAIM`` returns."""
        node, fence = dead
        me = self._membership
        args: list[str | int] = [node, fence, me.node_id, me.fence, CLAIM_BATCH, keys.PREFIX]
        return await self._claim(
            [keys.owned(node, fence), me.owned_key, keys.NODES, keys.lease(node)],
            args if code is None else [*args, code],
        )

    def _restore(self, found: list[bytes | list[bytes]]) -> int:
        sessions = []
        for i in range(0, len(found), 3):
            code, record, tail = found[i : i + 3]
            assert isinstance(code, bytes) and isinstance(record, bytes)
            assert isinstance(tail, list)
            try:
                sessions.append(stored_session(code.decode(), record, tail))
            except (ValueError, TypeError, KeyError) as error:
                logger.error("cluster: session %s could not be read (%s)", code, error)
        restored, expired = self._supervisor.restore(Loaded(sessions=sessions, clean=self._strict))
        return restored + expired

    async def claim(self, code: str, owner: Incarnation) -> SessionHandle | None:
        """``code`` is owned by ``owner``, a dead incarnation: take it over now (a client is
        waiting for it). ``None`` if another node claimed it first."""
        self._relay.gone(owner)
        found = await self._claim_batch(owner, code)
        if found:
            self.claimed += self._restore(found)
        return self._supervisor.lookup(code)

    async def keep_own(self, old_fence: int) -> None:
        """This node lost its lease and registered anew: keep each session nobody took
        meanwhile (saving it again if Redis lost it); stop serving the others."""
        me = self._membership
        lost, resave = [], False
        for code in self._supervisor.codes():
            kept: Any = await self._reclaim(
                [keys.directory(code), keys.owned(me.node_id, old_fence), me.owned_key],
                [me.node_id, old_fence, me.fence, code],
            )
            if not kept:
                lost.append(code)
            resave = resave or kept == 2
        for code in lost:
            await self._supervisor.relinquish(code)
        if resave:
            await self._supervisor.save_all()
        self._relay.reset_all()
        logger.warning(
            "cluster: new incarnation %d kept %d sessions, lost %d to other nodes",
            me.fence,
            len(self._supervisor.codes()),
            len(lost),
        )
