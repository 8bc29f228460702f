"""This node's place in the cluster: its lease, its fencing token, and the codes it reserved.

A node registers an *incarnation*: a fencing token from ``INCR ts:fence``, stored in its lease
``ts:node:{id}`` with a TTL of ``lease_ttl``, renewed every third of it. The token goes with
every write the node makes (``_keys.SAVE``/``CLOSE`` compare it with the session's directory
entry), so an incarnation that lost its lease can no longer change anything it used to own.

A renewal that finds the lease gone (it expired while Redis or the node was unreachable, or
Redis lost its data) means this incarnation is over: the node registers a new one and reclaims
those of its sessions that nobody took meanwhile (``RECLAIM``); the others it relinquishes.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import trio

from actors import CODE_ALPHABET, Environment
from protocol import ErrorCode, ProtocolError

from . import _keys as keys
from ._redis import REDIS_ERRORS

if TYPE_CHECKING:
    import coredis

logger = logging.getLogger(__name__)

CODE_RESERVE: Final = 256  # codes kept reserved ahead, so a create never waits for Redis
RESERVATION: Final = 3600  # seconds a reserved code stays reserved in Redis
CODE_SHELF_LIFE: Final = RESERVATION / 2  # seconds a node keeps a reserved code before dropping it


class Membership:
    """The node's identity in Redis (``node_id`` and ``fence``) and whether Redis answers."""

    def __init__(
        self,
        redis: coredis.Redis[bytes],
        database: int,
        node_id: str,
        url: str,
        lease_ttl: float,
        env: Environment,
    ) -> None:
        self.redis = redis
        self.database = database  # the Redis database number: part of the channels' names
        self.node_id = node_id
        self.url = url  # the public WebSocket address (admin views)
        self.lease_ttl = lease_ttl
        self.fence = 0  # the incarnation's fencing token; 0 until registered
        self.available = False  # Redis answered the last renewal
        # Trio time until which the directory may still miss sessions that live nodes are
        # re-registering (after this node lost its lease, so may have the others)
        self.settling_until = 0.0
        self.incarnation_changed = trio.Event()  # replaced by each new registration
        self._env = env
        self._codes: collections.deque[tuple[float, str]] = collections.deque()  # (when, code)
        self._want_codes = trio.Event()
        self._check = trio.Event()  # renew the lease now rather than at the next third of it
        self._register = redis.register_script(keys.REGISTER)
        self._renew = redis.register_script(keys.RENEW)
        self._reserve = redis.register_script(keys.RESERVE)

    @property
    def owned_key(self) -> str:
        return keys.owned(self.node_id, self.fence)

    @property
    def channel(self) -> str:
        return self.channel_of((self.node_id, self.fence))

    def channel_of(self, incarnation: tuple[str, int]) -> str:
        """The relay channel of ``incarnation`` in this cluster."""
        return keys.channel(self.database, *incarnation)

    async def register(self) -> None:
        """Start a new incarnation (a new fencing token and lease)."""
        ttl_ms = int(self.lease_ttl * 1000)
        args: list[str | int] = [self.node_id, ttl_ms, self.url, self.fence]
        fence: Any = await self._register(
            [keys.FENCE, keys.NODES, keys.lease(self.node_id), keys.ADDRESSES], args
        )
        if self.fence:  # a lost incarnation: the others may be re-registering too
            self.settling_until = trio.current_time() + 2 * self.lease_ttl
        self.fence = int(fence)
        self.available = True
        self._codes.clear()  # reserved under the old token (or in a Redis that lost them)
        self._want_codes.set()
        self.incarnation_changed.set()
        self.incarnation_changed = trio.Event()
        logger.info("cluster: node %s registered as incarnation %d", self.node_id, self.fence)

    async def keep_lease(
        self, on_lost: Callable[[int], Awaitable[None]], on_outage: Callable[[], None]
    ) -> None:
        """Renew the lease every third of its TTL, forever. ``on_outage()`` runs when Redis
        stops answering; ``on_lost(old_fence)`` once a new incarnation replaced a lost one."""
        while True:
            with trio.move_on_after(self.lease_ttl / 3):
                await self._check.wait()
            self._check = trio.Event()
            try:
                renewed: Any = await self._renew(
                    [keys.lease(self.node_id)], [self.fence, int(self.lease_ttl * 1000)]
                )
                if not renewed:
                    old = self.fence
                    logger.warning(
                        "cluster: node %s lost its lease (incarnation %d)", self.node_id, old
                    )
                    await self.register()
                    await on_lost(old)
                elif not self.available:
                    logger.warning("cluster: Redis answers again")
                    self.settling_until = trio.current_time() + 2 * self.lease_ttl
                self.available = True
            except REDIS_ERRORS as error:
                if self.available:
                    logger.error("cluster: Redis unavailable (%s): degraded mode", error)
                    on_outage()
                self.available = False
                self._codes.clear()

    # ------------------------------------------------------------------ codes

    def check_lease(self) -> None:
        """Renew the lease now (a write found the directory empty: Redis may have lost it)."""
        self._check.set()

    def settling(self) -> bool:
        """Whether the cluster may still be recovering from a Redis outage or data loss."""
        return trio.current_time() < self.settling_until

    def new_code(self, taken: Mapping[str, object], length: int) -> str:
        """A code reserved in the session directory (unique in the cluster); ``unavailable``
        when none is reserved (Redis is down: new sessions are refused, existing ones go on).
        """
        stale = trio.current_time() - CODE_SHELF_LIFE
        while self._codes and self.available:
            reserved_at, code = self._codes.popleft()
            if len(self._codes) < CODE_RESERVE // 2:
                self._want_codes.set()
            if reserved_at > stale and code not in taken and len(code) == length:
                return code
        self._want_codes.set()
        if not self.available:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                "the cluster cannot open new sessions now (its Redis is unavailable); existing "
                "sessions go on; retry later",
                retry_after_ms=1000,
            )
        raise ProtocolError(  # a burst of creates used every reserved code: more are coming
            ErrorCode.UNAVAILABLE,
            "no session code is reserved on this node yet; retry",
            retry_after_ms=50,
        )

    async def reserve_codes(self, length: int) -> None:
        """Keep ``CODE_RESERVE`` codes reserved for this incarnation, forever."""
        while True:
            await self._want_codes.wait()
            self._want_codes = trio.Event()
            try:
                while self.available and len(self._codes) < CODE_RESERVE:
                    await self._reserve_batch(length, CODE_RESERVE - len(self._codes))
            except REDIS_ERRORS:
                await trio.sleep(self.lease_ttl / 3)
                self._want_codes.set()

    async def _reserve_batch(self, length: int, count: int) -> None:
        """Reserve ``count`` new random codes in one round trip (those taken are skipped)."""
        fence = self.fence
        alphabet, rng = CODE_ALPHABET, self._env.rng
        codes = ["".join(rng.choice(alphabet) for _ in range(length)) for _ in range(count)]
        args: list[str | int] = [self.node_id, fence, RESERVATION]
        async with self.redis.pipeline(transaction=False) as pipe:
            requests: list[Any] = [
                self._reserve([keys.directory(code)], args, client=pipe) for code in codes
            ]
        now = trio.current_time()
        for code, request in zip(codes, requests, strict=True):
            if await request and fence == self.fence:
                self._codes.append((now, code))
