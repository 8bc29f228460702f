"""Abuse limits per client address and per user: connections, joins by code, session creation.

An :class:`AbuseGuard` is a synchronous object (no task of its own) that the connection code
consults. Its rules, with the defaults of :class:`actors.Config`:

**Connections per address.** A token bucket of ``connections_per_second`` (10) new connections
a second, holding at most ``connection_burst`` (50); at most ``max_connections_per_address``
(256) open at once. Refused: ``connecting too fast`` / ``too many connections from this
address``.

**Connections per user.** At most ``max_connections_per_user`` (32) open connections of one
user id.

**Failed joins per address.** A join by an unknown code is a failure. The
``join_failures_per_address``-th (20th) failure locks the address out of joins by code for
``join_lockout`` (60 s); each further lock-out lasts twice the previous one, at most
``LOCKOUT_CAP`` (a day): 1, 2, 4 ... 1,024 min, then a day. The escalation level drops by one
for each full ``LEVEL_DECAY`` (a day) after the end of the last lock-out without a new one. The
failure count restarts at each lock-out, and after ``FAILURE_MEMORY`` (a day) without a
failure. While locked out, :meth:`AbuseGuard.join_allowed` returns the time left, and the join
must be refused without looking the code up (its answer must not tell whether the code
exists). A successful join resets nothing: otherwise an attacker who knows one code could
interleave it with its guesses and never be locked out.

**Failed joins server-wide.** A token bucket of ``join_failures_per_second`` (50) holding
``GLOBAL_BURST_FACTOR`` (10) seconds' worth (500); every failure spends a token when there is
one. While it is empty, an address with a failure in its current count is refused until a token
is back; an address without one may still try, so a distributed guesser cannot lock everyone
else out.

**Sessions per user.** A token bucket of ``sessions_per_minute`` (10) a minute, holding as many.

A limit of 0 turns that rule off. IPv6 clients are held to their /64 network (one host usually
has a whole /64): "address" below means an IPv4 address or an IPv6 /64.

**Memory.** At most ``max_tracked`` addresses and ``max_tracked`` users are remembered. An entry
with nothing to remember (no open connection, a full bucket, no failure, no lock-out, level 0)
is forgotten. When a new one would exceed the bound, the least recently seen entry without an
open connection or an active lock-out is evicted (losing what it remembered: a partly spent
bucket, failures, a decaying level). Entries with open connections or active lock-outs are
never evicted: if every entry is one, a new address is refused (``server busy``) and a new user
too, until one closes or a lock-out ends.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, final

import attrs
import trio

from actors import Config

logger = logging.getLogger(__name__)

DAY: Final = 86400.0  # seconds
LOCKOUT_CAP: Final = DAY  # seconds: the longest lock-out
LEVEL_DECAY: Final = DAY  # seconds after a lock-out without another before its level drops by one
FAILURE_MEMORY: Final = DAY  # seconds without a failed join before an address's count restarts
GLOBAL_BURST_FACTOR: Final = 10  # the global failure budget holds this many seconds of its rate
SWEEP: Final = 2  # least recently seen entries checked for forgetting on each new connection
IPV6_PREFIX: Final = 64  # bits of an IPv6 address that name one client
CODE_ALPHABET: Final = 31  # characters a session code is drawn from

REFUSED_BUSY: Final = "server busy: too many client addresses"
REFUSED_TOO_MANY: Final = "too many connections from this address"
REFUSED_TOO_FAST: Final = "connecting too fast"


@attrs.define(kw_only=True)
class AbuseStatistics:
    """An :class:`AbuseGuard`'s counters (since start) and sizes (now); the guard keeps one as
    its counters and hands out copies (:meth:`AbuseGuard.statistics`).

    ``connections_refused`` counts refusals by :meth:`~AbuseGuard.admit_connection` and
    :meth:`~AbuseGuard.admit_user`; ``joins_locked_out`` joins refused during a lock-out;
    ``joins_throttled`` joins refused while the global budget was empty; ``lockouts`` lock-outs
    begun; ``join_failures`` failed joins; ``sessions_refused`` session creations refused.
    """

    connections_refused: int = 0
    joins_locked_out: int = 0
    joins_throttled: int = 0
    lockouts: int = 0
    join_failures: int = 0
    sessions_refused: int = 0
    tracked_addresses: int = 0
    tracked_users: int = 0


# ------------------------------------------------------------------------------ token buckets


@attrs.define(slots=True)
class _Bucket:
    tokens: float
    at: float  # clock time ``tokens`` was computed at


@attrs.frozen
class _Rate:
    """Token-bucket arithmetic for buckets that share a rate; ``per_second <= 0`` is no limit."""

    per_second: float
    burst: float

    @property
    def off(self) -> bool:
        return self.per_second <= 0

    def new(self, now: float) -> _Bucket:
        return _Bucket(self.burst, now)

    def take(self, bucket: _Bucket, now: float) -> bool:
        """Spend one token; ``False`` (nothing spent) if there is none."""
        if self.off:
            return True
        self._refill(bucket, now)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def wait(self, bucket: _Bucket, now: float) -> float | None:
        """Seconds until one token is there; ``None`` if one is there now."""
        if self.off:
            return None
        self._refill(bucket, now)
        return None if bucket.tokens >= 1 else (1 - bucket.tokens) / self.per_second

    def full(self, bucket: _Bucket, now: float) -> bool:
        if self.off:
            return True
        self._refill(bucket, now)
        return bucket.tokens >= self.burst

    def _refill(self, bucket: _Bucket, now: float) -> None:
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.per_second)
        bucket.at = now


# ------------------------------------------------------------------------------- the tables


@attrs.define(slots=True)
class _Entry:
    """What is remembered of one address (or user: only ``bucket`` and ``open``)."""

    bucket: _Bucket  # new connections (address) or sessions (user)
    open: int = 0
    failures: int = 0  # failed joins in the current count
    failed_at: float = -math.inf
    locked_until: float = -math.inf
    level: int = 0  # lock-outs counted towards the next one's length
    calm_since: float = -math.inf  # the level drops by one each LEVEL_DECAY after this
    parked: bool = False  # in the table's heap of locked-out entries

    def refresh(self, now: float) -> None:
        """Forget an old failure count; let the level decay."""
        if self.failures and now - self.failed_at >= FAILURE_MEMORY:
            self.failures = 0
        if self.level and now - self.calm_since >= LEVEL_DECAY:
            steps = int((now - self.calm_since) // LEVEL_DECAY)
            self.level = max(0, self.level - steps)
            self.calm_since += steps * LEVEL_DECAY


@final
class _Table:
    """Entries by key, at most ``limit`` of them.

    Entries without open connections are also in ``_idle``, least recently seen first: the
    eviction order. One found locked out while evicting moves to ``_parked`` (a heap by
    lock-out end) until its lock-out ends, so no entry is passed over twice for one lock-out.
    """

    def __init__(self, rate: _Rate, limit: int) -> None:
        self.rate = rate
        self.entries: dict[str, _Entry] = {}
        self._limit = limit
        self._idle: OrderedDict[str, None] = OrderedDict()
        self._parked: list[tuple[float, str]] = []

    def get_or_add(self, key: str, now: float) -> _Entry | None:
        """The entry for ``key``, now the most recently seen; ``None`` if the table is full."""
        entry = self.entries.get(key)
        if entry is not None:
            if key in self._idle:
                self._idle.move_to_end(key)
            return entry
        if not self._make_room(now):
            return None
        entry = self.entries[key] = _Entry(self.rate.new(now))
        self._idle[key] = None
        return entry

    def opened(self, key: str, entry: _Entry) -> None:
        entry.open += 1
        self._idle.pop(key, None)

    def closed(self, key: str, entry: _Entry, now: float) -> None:
        entry.open -= 1
        if entry.open == 0:
            self._idle[key] = None
            self.forget_if_idle(key, entry, now)

    def forget_if_idle(self, key: str, entry: _Entry, now: float) -> None:
        """Drop an entry that has nothing left to remember."""
        entry.refresh(now)
        if (
            entry.open == 0
            and entry.failures == 0
            and entry.level == 0
            and entry.locked_until <= now
            and self.rate.full(entry.bucket, now)
        ):
            del self.entries[key]
            self._idle.pop(key, None)

    def sweep(self, now: float) -> None:
        """Forget the least recently seen entries while they have nothing to remember."""
        for key in list(itertools.islice(self._idle, SWEEP)):
            self.forget_if_idle(key, self.entries[key], now)
            if key in self.entries:
                return

    def _make_room(self, now: float) -> bool:
        """Evict until one more entry fits; ``False`` if only protected entries are left."""
        while self._parked and self._parked[0][0] <= now:
            _, key = heapq.heappop(self._parked)
            entry = self.entries.get(key)
            if entry is not None and entry.parked:
                entry.parked = False
                if entry.open == 0:
                    self._idle[key] = None
        while len(self.entries) >= self._limit:
            if not self._idle:
                return False
            key = next(iter(self._idle))
            del self._idle[key]
            entry = self.entries[key]
            if entry.locked_until > now:
                if not entry.parked:
                    entry.parked = True
                    heapq.heappush(self._parked, (entry.locked_until, key))
                continue
            del self.entries[key]
        return True


# --------------------------------------------------------------------------------- the guard


@final
class AbuseGuard:
    """The abuse limits of one server (see the module's docstring for the rules).

    Args:
        config: the limits (``max_connections_per_address``, ``max_connections_per_user``,
            ``connections_per_second``, ``connection_burst``, ``join_failures_per_address``,
            ``join_lockout``, ``join_failures_per_second``, ``sessions_per_minute``).
        clock: the time in seconds; Trio's clock by default (tests pass a fake one).
        max_tracked: the most addresses, and the most users, remembered at once.

    Every method is synchronous and cheap (amortised constant time). Addresses are client
    addresses as :class:`TrustedProxies` gives them; anything that is not an IP address is
    taken as it is.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = trio.current_time,
        max_tracked: int = 100_000,
    ) -> None:
        if max_tracked < 1:
            raise ValueError(f"max_tracked must be at least 1, not {max_tracked}")
        self._config = config
        self._clock = clock
        self._addresses = _Table(
            _Rate(config.connections_per_second, config.connection_burst), max_tracked
        )
        self._users = _Table(
            _Rate(config.sessions_per_minute / 60, config.sessions_per_minute), max_tracked
        )
        budget = config.join_failures_per_second
        self._failure_rate = _Rate(budget, GLOBAL_BURST_FACTOR * budget)
        self._budget = self._failure_rate.new(clock())
        self._max_level = _max_level(config.join_lockout)
        self._counters = AbuseStatistics()

    # --------------------------------------------------------------------------- connections

    def admit_connection(self, address: str) -> str | None:
        """Count a new connection from ``address``; ``None`` if accepted, else why not.

        An accepted connection counts as open until :meth:`connection_closed`. Refusals:
        ``too many connections from this address``, ``connecting too fast``, ``server busy:
        too many client addresses`` (the memory bound).
        """
        now = self._clock()
        key = client_key(address)
        self._addresses.sweep(now)
        entry = self._addresses.get_or_add(key, now)
        if entry is None:
            return self._refuse_connection(REFUSED_BUSY)
        cap = self._config.max_connections_per_address
        if 0 < cap <= entry.open:
            return self._refuse_connection(REFUSED_TOO_MANY)
        if not self._addresses.rate.take(entry.bucket, now):
            return self._refuse_connection(REFUSED_TOO_FAST)
        self._addresses.opened(key, entry)
        return None

    def connection_closed(self, address: str) -> None:
        """A connection :meth:`admit_connection` accepted has closed."""
        key = client_key(address)
        entry = self._addresses.entries.get(key)
        if entry is not None and entry.open > 0:
            self._addresses.closed(key, entry, self._clock())

    def admit_user(self, user_id: str) -> bool:
        """Count an open connection of ``user_id``; ``False`` (not counted) over the cap.

        Also ``False`` when ``max_tracked`` users all have open connections. An admitted
        connection counts until :meth:`user_closed`.
        """
        now = self._clock()
        self._users.sweep(now)
        entry = self._users.get_or_add(user_id, now)
        cap = self._config.max_connections_per_user
        if entry is None or 0 < cap <= entry.open:
            self._counters.connections_refused += 1
            return False
        self._users.opened(user_id, entry)
        return True

    def user_closed(self, user_id: str) -> None:
        """A connection :meth:`admit_user` admitted has closed."""
        entry = self._users.entries.get(user_id)
        if entry is not None and entry.open > 0:
            self._users.closed(user_id, entry, self._clock())

    # --------------------------------------------------------------------------------- joins

    def join_allowed(self, address: str) -> float | None:
        """``None`` if ``address`` may try a join by code now, else the seconds until it may.

        Refused while the address is locked out, and while the global failure budget is empty
        if the address has a failure in its current count. A refused join must be answered
        without looking the code up.
        """
        now = self._clock()
        entry = self._addresses.entries.get(client_key(address))
        if entry is None:
            return None
        entry.refresh(now)
        if entry.locked_until > now:
            self._counters.joins_locked_out += 1
            return entry.locked_until - now
        if entry.failures:
            wait = self._failure_rate.wait(self._budget, now)
            if wait is not None:
                self._counters.joins_throttled += 1
                return wait
        return None

    def join_failed(self, address: str) -> None:
        """A join by code from ``address`` failed (no such session); may start a lock-out.

        Logs each lock-out at WARNING with the address (``extra={"client": address}``).
        """
        now = self._clock()
        self._failure_rate.take(self._budget, now)
        self._counters.join_failures += 1
        key = client_key(address)
        entry = self._addresses.get_or_add(key, now)
        if entry is None:
            return  # the memory bound: counted against the global budget only
        entry.refresh(now)
        if entry.locked_until > now:
            return  # the caller did not ask join_allowed: nothing more to hold against it
        entry.failures += 1
        entry.failed_at = now
        limit = self._config.join_failures_per_address
        if 0 < limit <= entry.failures and self._config.join_lockout > 0:
            self._lock_out(address, key, entry, now)

    def join_succeeded(self, address: str) -> None:
        """A join by code from ``address`` succeeded: this resets nothing, on purpose.

        Neither the failure count nor the lock-out level is forgiven: an attacker who knows one
        valid code could otherwise interleave it with its guesses and never be locked out.
        """

    def _lock_out(self, address: str, key: str, entry: _Entry, now: float) -> None:
        duration = min(self._config.join_lockout * 2**entry.level, LOCKOUT_CAP)
        logger.warning(
            "client %s locked out of joins by code for %.0f s after %d failed joins (level %d)",
            key,
            duration,
            entry.failures,
            entry.level + 1,
            extra={"client": address},
        )
        entry.locked_until = entry.calm_since = now + duration
        entry.level = min(entry.level + 1, self._max_level)
        entry.failures = 0
        self._counters.lockouts += 1

    # ------------------------------------------------------------------------------ sessions

    def session_created(self, user_id: str) -> float | None:
        """Count a session ``user_id`` creates; ``None`` if allowed, else seconds to wait.

        A refusal is not counted against the user: it may try again after the wait.
        """
        rate = self._users.rate
        if rate.off:
            return None
        now = self._clock()
        entry = self._users.get_or_add(user_id, now)
        if entry is None:
            self._counters.sessions_refused += 1
            return 1 / rate.per_second
        if rate.take(entry.bucket, now):
            return None
        self._counters.sessions_refused += 1
        return rate.wait(entry.bucket, now)

    # ---------------------------------------------------------------------------- statistics

    def statistics(self) -> AbuseStatistics:
        """A snapshot of the counters and of how many addresses and users are remembered."""
        return attrs.evolve(
            self._counters,
            tracked_addresses=len(self._addresses.entries),
            tracked_users=len(self._users.entries),
        )

    def _refuse_connection(self, reason: str) -> str:
        self._counters.connections_refused += 1
        return reason


def client_key(address: str) -> str:
    """What a client is held to: an IPv4 address, an IPv6 /64, or any other name as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def _max_level(join_lockout: float) -> int:
    """The first escalation level whose lock-out reaches the cap (no use counting further)."""
    if join_lockout <= 0 or join_lockout >= LOCKOUT_CAP:
        return 0
    return math.ceil(math.log2(LOCKOUT_CAP / join_lockout))


# ------------------------------------------------------------------------ what a guess costs


def expected_time_to_find_code(config: Config, live_sessions: int, *, addresses: int = 1) -> float:
    """Seconds, on average, for a guesser on ``addresses`` addresses to hit a live session's code.

    Codes are ``code_length`` characters of ``CODE_ALPHABET``, drawn at random, so a guess hits
    one of ``live_sessions`` codes with probability ``live_sessions / 31**code_length``. The
    guesser is taken at the guard's steady state: each address's lock-out at its cap, and
    guessing itself instantaneous (an upper bound on its rate). One address then makes at most
    ``join_failures_per_address`` guesses per ``LOCKOUT_CAP``, or one fewer per
    ``FAILURE_MEMORY`` if it stays under the lock-out threshold, whichever is more. Many
    addresses together make at most the global budget (``join_failures_per_second``) plus the
    one guess each address may make while it is empty. Returns 0 when nothing bounds the rate.
    """
    if live_sessions <= 0:
        return math.inf
    guesses = math.pow(CODE_ALPHABET, config.code_length) / live_sessions
    return guesses / _guess_rate(config, addresses)


def _guess_rate(config: Config, addresses: int) -> float:
    """The most failed joins a second ``addresses`` addresses can make, at the steady state."""
    limit = config.join_failures_per_address
    if limit <= 0 or config.join_lockout <= 0:
        per_address = math.inf
    else:
        per_address = max(limit / LOCKOUT_CAP, (limit - 1) / FAILURE_MEMORY)
    rate = addresses * per_address
    if config.join_failures_per_second <= 0:
        return rate
    # While the budget is empty, an address without a failure in its count may still try once.
    return min(rate, config.join_failures_per_second + addresses / FAILURE_MEMORY)
