"""Abuse limits (``gateway/_abuse.py``) on a fake clock, and the client address behind proxies
(``gateway/_client_address.py``).

The guard takes its clock as an argument: every test moves a plain float by hand, so nothing
sleeps and every boundary is exact.
"""

from __future__ import annotations

import logging
import math
import re

import pytest

from actors import Config
from gateway._abuse import (
    DAY,
    FAILURE_MEMORY,
    LOCKOUT_CAP,
    REFUSED_BUSY,
    REFUSED_TOO_FAST,
    REFUSED_TOO_MANY,
    AbuseGuard,
    AbuseStatistics,
    client_key,
    expected_time_to_find_code,
)
from gateway._client_address import TrustedProxies

YEAR = 365 * DAY


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def guard(clock: FakeClock, max_tracked: int = 100_000, **config: object) -> AbuseGuard:
    return AbuseGuard(Config(**config), clock=clock, max_tracked=max_tracked)  # type: ignore[arg-type]


def fail(g: AbuseGuard, address: str, times: int) -> None:
    for _ in range(times):
        assert g.join_allowed(address) is None
        g.join_failed(address)


# ------------------------------------------------------------------------------ connections


def test_new_connections_per_address_follow_a_token_bucket(clock: FakeClock) -> None:
    """connection_burst at once, then connections_per_second; each address has its own."""
    g = guard(clock)  # 10 a second, bursts of 50
    assert [g.admit_connection("1.2.3.4") for _ in range(50)] == [None] * 50
    assert g.admit_connection("1.2.3.4") == REFUSED_TOO_FAST == "connecting too fast"
    assert g.admit_connection("5.6.7.8") is None
    clock.advance(0.1)
    assert g.admit_connection("1.2.3.4") is None
    assert g.admit_connection("1.2.3.4") == REFUSED_TOO_FAST
    assert g.statistics().connections_refused == 2


def test_open_connections_per_address_are_capped(clock: FakeClock) -> None:
    """At most max_connections_per_address open at once; a refusal by the cap spends no token."""
    g = guard(
        clock, max_connections_per_address=3, connection_burst=5, connections_per_second=0.001
    )
    assert [g.admit_connection("1.2.3.4") for _ in range(3)] == [None] * 3
    assert g.admit_connection("1.2.3.4") == REFUSED_TOO_MANY
    assert REFUSED_TOO_MANY == "too many connections from this address"
    g.connection_closed("1.2.3.4")
    assert g.admit_connection("1.2.3.4") is None  # the 4th token
    g.connection_closed("1.2.3.4")
    assert g.admit_connection("1.2.3.4") is None  # the 5th: the refusal above spent none
    g.connection_closed("1.2.3.4")
    assert g.admit_connection("1.2.3.4") == REFUSED_TOO_FAST


def test_a_limit_of_zero_is_no_limit(clock: FakeClock) -> None:
    """connections_per_second 0 and max_connections_per_address 0 turn those rules off."""
    g = guard(clock, connections_per_second=0, max_connections_per_address=0)
    assert all(g.admit_connection("1.2.3.4") is None for _ in range(5000))


def test_ipv6_clients_are_held_to_their_64(clock: FakeClock) -> None:
    """Addresses in one IPv6 /64 share limits; IPv4-mapped addresses are their IPv4 address."""
    assert client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_key("::ffff:1.2.3.4") == "1.2.3.4"
    assert client_key("1.2.3.4") == "1.2.3.4"
    assert client_key("memory-7") == "memory-7"
    g = guard(clock, max_connections_per_address=2)
    assert g.admit_connection("2001:db8:1:2::1") is None
    assert g.admit_connection("2001:db8:1:2:ffff::2") is None
    assert g.admit_connection("2001:db8:1:2::3") == REFUSED_TOO_MANY
    assert g.admit_connection("2001:db8:1:3::1") is None  # another /64
    g.connection_closed("2001:db8:1:2::3")  # closing any address of the /64 frees a place
    assert g.admit_connection("2001:db8:1:2::4") is None
    assert g.admit_connection("::ffff:9.9.9.9") is None
    assert g.admit_connection("9.9.9.9") is None
    assert g.admit_connection("9.9.9.9") == REFUSED_TOO_MANY


def test_open_connections_per_user_are_capped(clock: FakeClock) -> None:
    """At most max_connections_per_user open connections of one user."""
    g = guard(clock, max_connections_per_user=2)
    assert [g.admit_user("alice") for _ in range(3)] == [True, True, False]
    assert g.admit_user("bob")
    g.user_closed("alice")
    assert g.admit_user("alice")
    assert not g.admit_user("alice")
    g.user_closed("nobody")  # unknown: ignored
    assert g.statistics().connections_refused == 2


# ---------------------------------------------------------------------------- failed joins


def test_an_address_is_locked_out_after_its_failures(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The 20th failure locks the address out for join_lockout; others are unaffected."""
    g = guard(clock)
    with caplog.at_level(logging.WARNING, logger="gateway._abuse"):
        fail(g, "1.2.3.4", 19)
        assert g.join_allowed("1.2.3.4") is None
        g.join_failed("1.2.3.4")
    assert g.join_allowed("1.2.3.4") == 60.0
    assert g.join_allowed("5.6.7.8") is None
    clock.advance(59.5)
    assert g.join_allowed("1.2.3.4") == 0.5
    clock.advance(0.5)
    assert g.join_allowed("1.2.3.4") is None
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert record.client == "1.2.3.4"  # type: ignore[attr-defined]
    assert record.getMessage() == (
        "client 1.2.3.4 locked out of joins by code for 60 s after 20 failed joins (level 1)"
    )
    stats = g.statistics()
    assert (stats.lockouts, stats.join_failures, stats.joins_locked_out) == (1, 20, 2)


def test_each_lock_out_doubles_up_to_a_day(clock: FakeClock) -> None:
    """60 s, 120 s, ... 61,440 s, then the cap of a day, and it stays there while it is used."""
    g = guard(clock)
    expected = [60.0 * 2**level for level in range(11)] + [LOCKOUT_CAP] * 3
    seen = []
    for _ in expected:
        fail(g, "1.2.3.4", 20)
        wait = g.join_allowed("1.2.3.4")
        assert wait is not None
        seen.append(wait)
        clock.advance(wait)
    assert seen == expected
    assert g.statistics().lockouts == len(expected)
    # The level stops at the cap's: one calm day brings the next lock-out below it again.
    clock.advance(DAY)
    fail(g, "1.2.3.4", 20)
    assert g.join_allowed("1.2.3.4") == 60.0 * 2**10


def test_the_escalation_drops_one_level_per_calm_day(clock: FakeClock) -> None:
    """A day after a lock-out ended without another, the next one is half as long."""
    g = guard(clock)
    for duration in (60.0, 120.0, 240.0):  # three lock-outs: the next would be 480 s
        fail(g, "1.2.3.4", 20)
        clock.advance(duration)
    clock.advance(DAY - 1)
    fail(g, "1.2.3.4", 20)
    assert g.join_allowed("1.2.3.4") == 480.0  # not a full calm day yet
    clock.advance(480.0 + DAY)
    fail(g, "1.2.3.4", 20)
    assert g.join_allowed("1.2.3.4") == 480.0  # one level less than 960
    clock.advance(480.0 + 3 * DAY)
    fail(g, "1.2.3.4", 20)
    assert g.join_allowed("1.2.3.4") == 120.0  # three levels less than 960


def test_failures_are_forgotten_after_a_quiet_day(clock: FakeClock) -> None:
    """The count restarts after FAILURE_MEMORY without a failure, not sooner."""
    g = guard(clock)
    fail(g, "1.2.3.4", 19)
    clock.advance(FAILURE_MEMORY - 1)
    fail(g, "1.2.3.4", 1)
    assert g.join_allowed("1.2.3.4") == 60.0
    clock.advance(60.0)
    fail(g, "5.6.7.8", 19)
    clock.advance(FAILURE_MEMORY)
    fail(g, "5.6.7.8", 19)
    assert g.join_allowed("5.6.7.8") is None


def test_a_successful_join_resets_nothing(clock: FakeClock) -> None:
    """Knowing one valid code does not buy more guesses."""
    g = guard(clock)
    fail(g, "1.2.3.4", 19)
    g.join_succeeded("1.2.3.4")
    g.join_failed("1.2.3.4")
    assert g.join_allowed("1.2.3.4") == 60.0


def test_failures_reported_during_a_lock_out_do_not_extend_it(clock: FakeClock) -> None:
    """A failure reported while locked out (join_allowed was not asked) adds nothing."""
    g = guard(clock)
    fail(g, "1.2.3.4", 20)
    for _ in range(100):
        g.join_failed("1.2.3.4")
    assert g.join_allowed("1.2.3.4") == 60.0
    clock.advance(60.0)
    assert g.join_allowed("1.2.3.4") is None


def test_the_global_budget_holds_back_only_addresses_that_failed(clock: FakeClock) -> None:
    """With the server-wide budget spent, addresses that failed wait; fresh ones may try."""
    g = guard(clock, join_failures_per_second=1.0)  # bursts of 10
    for n in range(10):
        g.join_failed(f"10.0.0.{n}")
    assert g.join_allowed("10.0.0.0") == 1.0
    assert g.join_allowed("192.0.2.1") is None  # never failed: may try
    g.join_failed("192.0.2.1")
    assert g.join_allowed("192.0.2.1") == 1.0
    clock.advance(0.5)
    assert g.join_allowed("10.0.0.5") == 0.5
    clock.advance(0.5)
    assert g.join_allowed("10.0.0.5") is None
    g.join_failed("10.0.0.5")
    assert g.join_allowed("10.0.0.6") == 1.0
    assert g.statistics().joins_throttled == 4
    clock.advance(FAILURE_MEMORY)  # their failures are forgotten
    for n in range(10, 30):
        g.join_failed(f"10.0.1.{n}")
    assert g.join_allowed("10.0.0.6") is None


# ---------------------------------------------------------------------------------- sessions


def test_sessions_per_user_follow_a_per_minute_bucket(clock: FakeClock) -> None:
    """sessions_per_minute at once, then one every 60 / sessions_per_minute seconds."""
    g = guard(clock)  # 10 a minute
    assert [g.session_created("alice") for _ in range(10)] == [None] * 10
    assert g.session_created("alice") == pytest.approx(6.0)
    assert g.session_created("bob") is None
    clock.advance(3.0)
    assert g.session_created("alice") == pytest.approx(3.0)
    clock.advance(3.0)
    assert g.session_created("alice") is None
    assert g.statistics().sessions_refused == 2
    unlimited = guard(clock, sessions_per_minute=0)
    assert all(unlimited.session_created("alice") is None for _ in range(100))


# ------------------------------------------------------------------------------------ memory


def test_an_address_with_nothing_to_remember_is_forgotten(clock: FakeClock) -> None:
    """Once its bucket is full again and it has no connection or failure, it is dropped."""
    g = guard(clock)
    assert g.admit_connection("1.2.3.4") is None
    g.connection_closed("1.2.3.4")
    assert g.statistics().tracked_addresses == 1  # its bucket is not full yet
    clock.advance(0.1)
    assert g.admit_connection("5.6.7.8") is None  # each new connection sweeps the oldest
    assert g.statistics().tracked_addresses == 1
    g.connection_closed("5.6.7.8")
    clock.advance(0.1)
    g.join_failed("9.9.9.9")
    assert g.admit_connection("2.2.2.2") is None
    assert g.statistics().tracked_addresses == 2  # 9.9.9.9 remembers its failure
    clock.advance(FAILURE_MEMORY)
    g.connection_closed("2.2.2.2")
    assert g.admit_connection("3.3.3.3") is None
    assert g.statistics().tracked_addresses == 1


def test_tracked_addresses_never_exceed_the_bound(clock: FakeClock) -> None:
    """Thousands of addresses passing through keep at most max_tracked entries."""
    g = guard(clock, max_tracked=100)
    for n in range(5000):
        address = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
        assert g.admit_connection(address) is None
        g.join_failed(address)  # something to remember: never forgotten, only evicted
        g.connection_closed(address)
        assert g.statistics().tracked_addresses <= 100
    assert g.statistics().tracked_addresses == 100


def test_the_least_recently_seen_idle_address_is_evicted_first(clock: FakeClock) -> None:
    """Over the bound, the idle entry seen longest ago goes (and with it what it remembered)."""
    g = guard(clock, max_tracked=3)
    for address in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        fail(g, address, 19)
    g.join_failed("1.1.1.1")  # seen again: now 2.2.2.2 is the oldest
    clock.advance(60.0)  # 1.1.1.1's lock-out is over
    assert g.admit_connection("4.4.4.4") is None
    fail(g, "3.3.3.3", 1)
    assert g.join_allowed("3.3.3.3") == 60.0  # still remembered: its 20th failure
    fail(g, "2.2.2.2", 1)
    assert g.join_allowed("2.2.2.2") is None  # forgotten: its count restarted
    assert g.statistics().tracked_addresses == 3


def test_open_or_locked_out_addresses_are_never_evicted(clock: FakeClock) -> None:
    """If every tracked address is protected, a new one is refused until one is not."""
    g = guard(clock, max_tracked=2)
    assert g.admit_connection("1.1.1.1") is None
    fail(g, "2.2.2.2", 20)  # locked out for 60 s, no connection
    assert g.admit_connection("3.3.3.3") == REFUSED_BUSY
    assert REFUSED_BUSY == "server busy: too many client addresses"
    clock.advance(30.0)
    assert g.admit_connection("3.3.3.3") == REFUSED_BUSY
    assert g.admit_connection("1.1.1.1") is None  # a known address is still served
    assert g.join_allowed("2.2.2.2") == 30.0
    clock.advance(30.0)  # the lock-out is over: 2.2.2.2 may go
    assert g.admit_connection("3.3.3.3") is None
    g.connection_closed("1.1.1.1")
    g.connection_closed("1.1.1.1")
    assert g.admit_connection("4.4.4.4") is None  # 1.1.1.1 is idle now
    assert g.statistics() == AbuseStatistics(
        connections_refused=2,
        joins_locked_out=1,
        lockouts=1,
        join_failures=20,
        tracked_addresses=2,
    )


def test_a_locked_out_address_that_reconnects_stays_protected(clock: FakeClock) -> None:
    """Connecting and closing during a lock-out does not make it evictable."""
    g = guard(clock, max_tracked=2)
    fail(g, "2.2.2.2", 20)
    assert g.admit_connection("1.1.1.1") is None
    assert g.admit_connection("3.3.3.3") == REFUSED_BUSY  # 2.2.2.2 found locked out
    g.connection_closed("1.1.1.1")
    assert g.admit_connection("2.2.2.2") is None
    g.connection_closed("2.2.2.2")
    assert g.admit_connection("3.3.3.3") is None  # evicts 1.1.1.1, not 2.2.2.2
    assert g.join_allowed("2.2.2.2") == 60.0
    assert g.admit_connection("4.4.4.4") == REFUSED_BUSY
    clock.advance(60.0)
    assert g.admit_connection("4.4.4.4") is None


def test_tracked_users_are_bounded_too(clock: FakeClock) -> None:
    """Users with open connections are kept; a new user is refused while all have one."""
    g = guard(clock, max_tracked=2)
    assert g.admit_user("alice") and g.admit_user("bob")
    assert not g.admit_user("carol")
    assert g.session_created("carol") == pytest.approx(6.0)  # cannot be counted: told to wait
    assert g.session_created("bob") is None
    g.user_closed("bob")
    assert g.statistics().tracked_users == 2  # bob is idle but remembers his session
    assert g.admit_user("carol")  # evicts bob
    assert g.statistics().tracked_users == 2
    g.user_closed("alice")  # nothing left to remember: forgotten at once
    assert g.statistics().tracked_users == 1


def test_max_tracked_must_be_positive(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match=r"^max_tracked must be at least 1, not 0$"):
        guard(clock, max_tracked=0)


# -------------------------------------------------------------------- what guessing costs


def test_one_address_needs_more_than_a_year_at_10000_sessions() -> None:
    """At the defaults, one address guessing codes hits one of 10,000 sessions in over a year."""
    seconds = expected_time_to_find_code(Config(), 10_000)
    assert seconds >= YEAR
    # 31**6 / 10,000 guesses at 20 guesses a day.
    assert seconds == pytest.approx(31**6 / 10_000 / (20 / DAY))
    assert expected_time_to_find_code(Config(), 100) == pytest.approx(100 * seconds)


def test_many_addresses_share_the_work_until_the_global_budget() -> None:
    """N addresses guess N times as fast, until the server-wide budget binds."""
    one = expected_time_to_find_code(Config(), 10_000)
    assert expected_time_to_find_code(Config(), 10_000, addresses=1000) == pytest.approx(one / 1000)
    million = 1_000_000  # 231 guesses a second: the budget (50 + 1 per address per day) binds
    assert expected_time_to_find_code(Config(), 10_000, addresses=million) == pytest.approx(
        31**6 / 10_000 / (50 + million / DAY)
    )


def test_longer_codes_and_limits_change_the_expected_time() -> None:
    """The figure follows code_length and the limits; it is 0 when nothing bounds guessing."""
    six = expected_time_to_find_code(Config(), 10_000)
    assert expected_time_to_find_code(Config(code_length=8), 10_000) == pytest.approx(31**2 * six)
    assert expected_time_to_find_code(Config(join_failures_per_address=10), 10_000) == (
        pytest.approx(31**6 / 10_000 / (10 / DAY))
    )
    assert expected_time_to_find_code(Config(join_failures_per_address=0), 10_000, addresses=5) == (
        pytest.approx(31**6 / 10_000 / (50 + 5 / DAY))
    )
    off = Config(join_failures_per_address=0, join_failures_per_second=0)
    assert expected_time_to_find_code(off, 10_000) == 0.0
    assert expected_time_to_find_code(Config(), 0) == math.inf


# --------------------------------------------------------------------- trusted proxies


PROXIES = TrustedProxies.parse("10.0.0.0/8, 192.168.1.1 ,2001:db8:ffff::/48")


def test_trusted_proxies_are_parsed_from_a_comma_separated_list() -> None:
    assert TrustedProxies.parse("") == TrustedProxies(())
    assert TrustedProxies.parse(" , ") == TrustedProxies(())
    assert [str(n) for n in PROXIES.networks] == [
        "10.0.0.0/8",
        "192.168.1.1/32",
        "2001:db8:ffff::/48",
    ]
    assert [str(n) for n in TrustedProxies.parse("10.1.2.3/8").networks] == ["10.0.0.0/8"]
    with pytest.raises(
        ValueError, match=re.escape("trusted_proxy: 'proxy.local' is not an IP address or network")
    ):
        TrustedProxies.parse("10.0.0.1, proxy.local")


def test_the_header_of_an_untrusted_peer_is_ignored() -> None:
    assert PROXIES.client_address("203.0.113.9", "1.2.3.4") == "203.0.113.9"
    assert TrustedProxies().client_address("10.0.0.1", "1.2.3.4") == "10.0.0.1"
    assert PROXIES.client_address("10.0.0.1", None) == "10.0.0.1"
    assert PROXIES.client_address("::ffff:203.0.113.9", None) == "203.0.113.9"
    assert PROXIES.client_address("memory", "1.2.3.4") == "memory"  # not an IP address


def test_the_client_is_the_right_most_untrusted_entry() -> None:
    """Trusted hops are skipped from the right; whatever the client wrote further left is not read."""
    assert PROXIES.client_address("10.0.0.1", "1.2.3.4") == "1.2.3.4"
    assert PROXIES.client_address("10.0.0.1", "6.6.6.6, 1.2.3.4") == "1.2.3.4"
    assert PROXIES.client_address("10.0.0.1", "6.6.6.6,1.2.3.4, 10.0.0.2, 192.168.1.1") == "1.2.3.4"
    assert PROXIES.client_address("2001:db8:ffff::1", "2001:db8::7") == "2001:db8::7"
    assert PROXIES.client_address("10.0.0.1", "10.0.0.5, 10.0.0.6") == "10.0.0.5"  # all trusted


def test_entries_with_ports_and_mapped_addresses_are_normalised() -> None:
    assert PROXIES.client_address("10.0.0.1", "1.2.3.4:5678") == "1.2.3.4"
    assert PROXIES.client_address("10.0.0.1", "[2001:db8::1]:443") == "2001:db8::1"
    assert PROXIES.client_address("10.0.0.1", "[2001:db8::1]") == "2001:db8::1"
    assert PROXIES.client_address("10.0.0.1", "::ffff:1.2.3.4") == "1.2.3.4"
    assert PROXIES.client_address("10.0.0.1", "1.2.3.4, [::ffff:10.0.0.9]:80") == "1.2.3.4"


def test_a_malformed_entry_ends_the_walk_at_the_nearest_trusted_hop() -> None:
    """Garbage is never skipped over to reach an address the client could have written."""
    for header in (
        "1.2.3.4, unknown",
        "",
        "1.2.3.4, ",
        "1.2.3.4:port",
        "1.2.3.4:123456",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "_hidden",
        "1.2.3.4 5.6.7.8",
    ):
        assert PROXIES.client_address("10.0.0.1", header) == "10.0.0.1", header
    assert PROXIES.client_address("10.0.0.1", "6.6.6.6, garbage, 10.0.0.2") == "10.0.0.2"
