"""The Python client against a server with a key: token refresh, close codes 4004 / 4005 / 1013,
live sessions (a guardian's seat given by the server, kept across drops) and user notices.

Every test runs a real in-process server (``start_memory``, JWTs made with PyJWT as in
``test_security``) under the autojump clock, so token lifetimes of a minute pass in an instant
and every timing below is exact. Tokens are dated on the real wall clock, as the server checks
them; the connection's expiry then runs on Trio's clock on both ends.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
import trio_websocket

import protocol
from actors import Config
from client import (
    REFRESH_AT,
    Backoff,
    ClientEvent,
    ConnectionEvent,
    ConnectionLost,
    ConnectionState,
    Link,
    LostReason,
    RequestError,
    WebSocketLink,
    connect,
)

from .conftest import MAX_FRAME, TCP_GUARD, Harness, start_memory, start_tcp
from .test_client import next_of
from .test_security import AUTH, token

FORGED_KEY = "a-key-that-is-not-the-servers-secret-at-all"
LIFETIME = 60.0  # seconds a provider's token lives
LEEWAY = Config().jwt_leeway  # the server closes a link once its token is past exp + this


class MemoryOpener:
    """Opens the client's links to an in-memory server; records when (Trio time) each was
    opened, and can cut the newest one like a pulled cable.

    With ``hold_notices``, a reconnection's link hands the client no ``guardian:liveStarted``
    notice (nor any frame after it) before the client has sent a ``session:resume`` on it: the
    server's order is kept, only the client reads later, as when the resume goes out before the
    notice arrives.
    """

    def __init__(self, harness: Harness, *, hold_notices: bool = False) -> None:
        assert harness.listener is not None
        self._listener = harness.listener
        self._hold = hold_notices
        self.opened: list[float] = []
        self._stream: trio.abc.Stream | None = None

    async def __call__(self, nursery: trio.Nursery) -> Link:
        stream = await self._listener.connect()
        hold = self._hold and bool(self.opened)
        self.opened.append(trio.current_time())
        self._stream = stream
        ws = await trio_websocket.wrap_client_stream(
            nursery, stream, "127.0.0.1", "/ws", max_message_size=MAX_FRAME
        )
        return _HoldingLink(WebSocketLink(ws)) if hold else WebSocketLink(ws)

    async def drop(self) -> None:
        """End the newest link without a close frame (the server starts the seat's grace)."""
        assert self._stream is not None
        await trio.aclose_forcefully(self._stream)


class _HoldingLink:
    def __init__(self, link: Link) -> None:
        self._link = link
        self._resume_sent = trio.Event()

    async def send(self, frame: str) -> None:
        await self._link.send(frame)
        if '"session:resume"' in frame:
            self._resume_sent.set()

    async def receive(self) -> str:
        frame = await self._link.receive()
        if '"guardian:liveStarted"' in frame:
            await self._resume_sent.wait()
        return frame

    async def aclose(self) -> None:
        await self._link.aclose()


class Provider:
    """A token provider for ``user``: each call returns a token valid for ``LIFETIME`` seconds,
    or, when ``refuse(call_number, now)`` says so, one the server refuses (a forged signature).
    Records when (Trio time) it was called."""

    def __init__(self, user: str, refuse: Callable[[int, float], bool] = lambda n, t: False):
        self.user = user
        self.refuse = refuse
        self.calls: list[float] = []

    async def __call__(self) -> str:
        now = trio.current_time()
        self.calls.append(now)
        if self.refuse(len(self.calls), now):
            return token(self.user, key=FORGED_KEY)
        return token(self.user, exp=time.time() + LIFETIME)


async def until(client: Any, done: Callable[[ClientEvent], bool]) -> list[ClientEvent]:
    """Every event of ``client`` up to and including the first for which ``done`` is true."""
    seen: list[ClientEvent] = []
    with trio.fail_after(3600):
        async for event in client.events:
            seen.append(event)
            if done(event):
                return seen
    raise AssertionError(f"events ended after {seen}")


def room_data(events: list[ClientEvent]) -> list[Any]:
    return [e.data for e in events if isinstance(e, protocol.RoomMessageEvent)]


def is_state(state: ConnectionState) -> Callable[[ClientEvent], bool]:
    return lambda e: isinstance(e, ConnectionEvent) and e.state is state


@pytest.fixture
async def auth(nursery: trio.Nursery) -> Harness:
    """A server with a key. Tests using it also take ``autojump_clock``: pytest-trio only runs
    a test on a clock its own arguments name."""
    return await start_memory(nursery, **AUTH)


async def a_session(harness: Harness) -> tuple[Any, str]:
    """A host (a raw client with a day-long token) with a session and a room ``r``."""
    host = await harness.client("host", token=token("host", exp=time.time() + 86_400))
    code = (await host.ok("session:create"))["code"]
    await host.ok("session:createRoom", room="r")
    return host, code


# ---------------------------------------------------------------- refresh


async def test_a_token_provider_refreshes_each_token_before_it_expires(
    auth, autojump_clock
) -> None:
    provider = Provider("alice")
    opener = MemoryOpener(auth)
    async with connect(opener, token_provider=provider) as alice:
        await alice.create_session()
        await trio.sleep(10 * LIFETIME)
        assert len(opener.opened) == 1, "the link was never dropped"
        gaps = [b - a for a, b in itertools.pairwise(provider.calls)]
        assert len(gaps) >= 12
        assert gaps == [pytest.approx(REFRESH_AT * LIFETIME, abs=0.1)] * len(gaps)
        assert await alice.patch_state({"still": "here"}) == 1
        assert alice.user_id == "alice"
    assert auth.server.counters.auth_failures == 0


async def test_refresh_token_by_hand_and_a_fixed_token_that_expires(auth, autojump_clock) -> None:
    opener = MemoryOpener(auth)
    async with connect(opener, token=token("alice", exp=time.time() + LIFETIME)) as alice:
        await alice.create_session()
        await trio.sleep(LIFETIME / 2)
        reply = await alice.refresh_token(token("alice", exp=time.time() + 2 * LIFETIME))
        assert reply.user_id == "alice" and reply.expires_at is not None
        with pytest.raises(RequestError, match=r"^forbidden: the new token is for another user$"):
            await alice.refresh_token(token("mallory"))
        with pytest.raises(RequestError, match=r"^unauthorized: bad signature$"):
            await alice.refresh_token(token("alice", key=FORGED_KEY))
        await trio.sleep(LIFETIME)  # past the first token's expiry: the second one holds
        assert await alice.patch_state({"at": "90 s"}) == 1
        lost = await next_of(alice, ConnectionEvent)  # the second one runs out: 4005
        assert trio.current_time() == pytest.approx(LIFETIME / 2 + 2 * LIFETIME + LEEWAY, abs=0.1)
        assert (lost.state, lost.cause) == (ConnectionState.LOST, LostReason.TOKEN_EXPIRED)
        assert len(opener.opened) == 1, "no reconnect with a token the server would refuse"
        with pytest.raises(ConnectionLost):
            await alice.patch_state({"too": "late"})


async def test_an_expired_token_reconnects_with_a_fresh_one_and_resumes(
    auth, autojump_clock
) -> None:
    host, code = await a_session(auth)
    # every refresh is refused (the provider hands out forged tokens until the expiry), so the
    # server closes the link with 4005 once the first token is past its expiry and the leeway
    provider = Provider("alice", refuse=lambda n, now: n > 1 and now < LIFETIME)
    opener = MemoryOpener(auth)
    async with connect(opener, token_provider=provider, backoff=Backoff(base=2.0)) as alice:
        joined = await alice.join(code)
        await host.ok("room:message", room="r", data="before")
        seen = await until(alice, is_state(ConnectionState.RECONNECTING))
        assert seen[-1].code == protocol.CloseCode.TOKEN_EXPIRED
        assert trio.current_time() == pytest.approx(LIFETIME + LEEWAY, abs=0.01)
        refreshes = [t for t in provider.calls[1:] if t < LIFETIME]
        assert refreshes[0] == pytest.approx(REFRESH_AT * LIFETIME, abs=0.1)
        assert auth.server.counters.auth_failures == len(refreshes)
        await host.ok("room:message", room="r", data="while away")
        seen += await until(alice, is_state(ConnectionState.RESUMED))
        assert seen[-1].recovered is True and seen[-1].session == code
        assert provider.calls[-1] >= LIFETIME, "the reconnect asked the provider again"
        await host.ok("room:message", room="r", data="after")
        seen += await until(alice, lambda e: getattr(e, "data", None) == "after")
        assert room_data(seen) == ["before", "while away", "after"]
        seqs = [e.seq for e in seen if isinstance(e, protocol.Event)]
        assert seqs == sorted(set(seqs)) and alice.participant_id == joined.participant_id
        assert await alice.send("r", "back") > seqs[-1]


# ---------------------------------------------------------------- refused tokens


async def test_a_refused_fixed_token_is_final(auth, autojump_clock) -> None:
    opener = MemoryOpener(auth)
    with pytest.raises(ConnectionLost, match=r"^hello refused: bad signature$") as lost:
        async with connect(opener, token=token("alice", key=FORGED_KEY)):
            pass
    assert lost.value.cause is LostReason.UNAUTHORIZED
    assert len(opener.opened) == 1, "never retried with the same token"


async def test_a_provider_gets_one_more_try_after_a_refused_token(auth, autojump_clock) -> None:
    provider = Provider("alice", refuse=lambda n, now: True)
    opener = MemoryOpener(auth)
    with pytest.raises(ConnectionLost, match=r"^hello refused: bad signature$") as lost:
        async with connect(opener, token_provider=provider):
            pass
    assert lost.value.cause is LostReason.UNAUTHORIZED
    assert len(provider.calls) == len(opener.opened) == 2


@pytest.mark.parametrize("refused", [1, 2])
async def test_a_token_refused_on_a_reconnect(auth, autojump_clock, refused: int) -> None:
    """After a drop the provider's token is refused: once, and the next one resumes; twice,
    and the client gives up (``unauthorized``) instead of retrying for ever."""
    dropped_at: list[int] = []
    provider = Provider(
        "alice", refuse=lambda n, now: bool(dropped_at) and n <= dropped_at[0] + refused
    )
    opener = MemoryOpener(auth)
    async with connect(opener, token_provider=provider) as alice:
        code = (await alice.create_session()).code
        dropped_at.append(len(provider.calls))
        await opener.drop()
        seen = await until(
            alice, is_state(ConnectionState.RESUMED if refused == 1 else ConnectionState.LOST)
        )
        assert len(opener.opened) == 1 + refused + (refused == 1)
        if refused == 1:
            assert seen[-1].session == code and alice.session_code == code
        else:
            assert seen[-1].cause is LostReason.UNAUTHORIZED
            assert (seen[-1].error_code, seen[-1].reason) == (
                "unauthorized",
                "hello refused: bad signature",
            )


# ---------------------------------------------------------------- try again later (1013)


@pytest.mark.parametrize(
    "limit",
    ["max_connections_per_user", "max_connections_per_address"],  # hello refused / closed before
)
async def test_try_again_later_backs_off_longer(nursery, autojump_clock, limit: str) -> None:
    harness = await start_memory(nursery, **AUTH, **{limit: 1})
    alice = token("alice", exp=time.time() + 86_400)
    second = MemoryOpener(harness)
    backoff = Backoff(rng=random.Random(7))
    connected = trio.Event()

    async def second_tab() -> None:
        async with connect(second, token=alice, backoff=backoff):
            connected.set()
            await trio.sleep_forever()

    async with trio.open_nursery() as tabs:
        async with connect(MemoryOpener(harness), token=alice):
            tabs.start_soon(second_tab)
            await trio.sleep(60)
            assert not connected.is_set()
            gaps = [b - a for a, b in itertools.pairwise(second.opened)]
            assert len(gaps) >= 3 and min(gaps) >= backoff.busy
        with trio.fail_after(2 * (backoff.busy + backoff.cap)):
            await connected.wait()
        tabs.cancel_scope.cancel()


def test_the_busy_delay_is_the_usual_one_plus_the_floor() -> None:
    backoff = Backoff(base=1.0, cap=8.0, busy=5.0, rng=random.Random(3))
    delays = [backoff.delay(attempt, busy=True) for attempt in range(10) for _ in range(50)]
    assert min(delays) >= 5.0 and max(delays) <= 13.0
    assert max(Backoff(rng=random.Random(3)).delay(0) for _ in range(50)) <= 0.5


# ---------------------------------------------------------------- session options


async def test_create_session_with_an_allow_list_and_another_session(auth, autojump_clock) -> None:
    openers = {user: MemoryOpener(auth) for user in ("host", "bob", "carol")}
    tokens = {user: token(user, exp=time.time() + 86_400) for user in openers}
    async with (
        connect(openers["host"], token=tokens["host"]) as host,
        connect(openers["bob"], token=tokens["bob"]) as bob,
        connect(openers["carol"], token=tokens["carol"]) as carol,
    ):
        created = await host.create_session(allowed_users=["bob"], meta={"title": "bob only"})
        assert (await bob.join(created.code)).role == "participant"
        with pytest.raises(RequestError) as refused:
            await carol.join(created.code)
        assert refused.value.code == "forbidden"
        with pytest.raises(RequestError) as limit:
            await host.create_session(another=True)  # one hosted session per user by default
        assert limit.value.code == "session_limit"
        again = await host.create_session()
        assert (again.code, again.reused) == (created.code, True)


# ---------------------------------------------------------------- live sessions


async def test_a_ward_goes_live_and_its_guardian_is_seated_by_the_server(
    auth, autojump_clock
) -> None:
    assert await auth.server.relations.add("ward", "mum")
    ward_opener = MemoryOpener(auth)
    async with (
        connect(MemoryOpener(auth), token_provider=Provider("mum")) as mum,
        connect(ward_opener, token_provider=Provider("ward")) as ward,
    ):
        live = await ward.start_live(state={"page": 1}, meta={"lesson": "maths"})
        assert isinstance(live, protocol.LiveReply)
        assert (live.kind, live.role, live.guardians, live.connected_guardians) == (
            "live",
            "host",
            ["mum"],
            ["mum"],
        )
        started = (await until(ward, lambda e: isinstance(e, protocol.LiveStarted)))[-1]
        assert started == protocol.LiveStarted(
            session=live.code, guardians=["mum"], connected_guardians=["mum"]
        )
        seated = (await until(mum, lambda e: isinstance(e, protocol.GuardianLiveStarted)))[-1]
        assert (seated.session, seated.ward_id, seated.role) == (live.code, "ward", "guardian")
        assert seated.state == {"page": 1}
        seat = mum.seats.get(live.code)
        assert seat is not None and (seat.role, seat.token) == ("guardian", seated.resume_token)

        await ward.patch_state({"page": 2})
        update = (await until(mum, lambda e: isinstance(e, protocol.StateUpdated)))[-1]
        assert (update.session, update.patch) == (live.code, {"page": 2})
        assert seat.last_seq == update.seq

        await ward_opener.drop()  # the ward's own seat in its live session resumes as any other
        resumed = (await until(ward, is_state(ConnectionState.RESUMED)))[-1]
        assert (resumed.session, resumed.recovered) == (live.code, True)
        await ward.stop_live()
        closed = (await until(mum, lambda e: isinstance(e, protocol.SessionClosed)))[-1]
        assert (closed.session, closed.reason) == (live.code, "manual_stop")
        assert len(mum.seats) == 0 and ward.session_code is None


async def _watched_across_a_drop(
    harness: Harness, notice_first: bool = True
) -> tuple[list[ClientEvent], str, Any]:
    """A guardian (Python client) seated in a ward's live session loses its link; meanwhile the
    ward sends a room message and changes the state. Returns what the guardian received from
    the drop on, up to a message the ward sends once the guardian is back; the live code; and
    the guardian's seat before the drop. ``notice_first``: the client reads the server's
    ``guardian:liveStarted`` before it sends its ``session:resume`` (else after)."""
    assert await harness.server.relations.add("ward", "mum")
    ward = await harness.client("ward", token=token("ward", exp=time.time() + 86_400))
    opener = MemoryOpener(harness, hold_notices=not notice_first)
    async with connect(opener, token_provider=Provider("mum")) as mum:
        code = (await ward.ok("live:start", state={"page": 1}))["code"]
        await ward.ok("session:createRoom", room="r")
        await until(mum, lambda e: isinstance(e, protocol.RoomCreated))
        before = mum.seats.get(code)
        assert before is not None
        await opener.drop()
        seen = await until(mum, is_state(ConnectionState.RECONNECTING))
        await ward.ok("room:message", room="r", data="while away")
        await ward.ok("state:patch", patch={"page": 2})
        seen += await until(
            mum, lambda e: isinstance(e, ConnectionEvent) and e.state is not ConnectionState.LOST
        )
        await ward.ok("room:message", room="r", data="after")
        seen += await until(mum, lambda e: getattr(e, "data", None) == "after")
        after = mum.seats.get(code)
        assert after is not None and after.participant_id == before.participant_id
        return seen, code, before


@pytest.mark.parametrize("notice_first", [True, False], ids=["notice-first", "resume-first"])
async def test_a_guardian_keeps_its_live_seat_across_a_drop(
    auth, autojump_clock, notice_first: bool
) -> None:
    """The server seats a reconnecting guardian again at its hello, with a new resume token and
    a snapshot (``guardian:liveStarted``), which makes a resume with the old token fail: the
    client takes the new seat over, so it stays seated with the current state, and no seat is
    reported lost, whichever of the notice and its resume came first."""
    seen, code, before = await _watched_across_a_drop(auth, notice_first)
    states = [e.state for e in seen if isinstance(e, ConnectionEvent)]
    assert ConnectionState.LOST not in states and ConnectionState.SEAT_LOST not in states
    again = [e for e in seen if isinstance(e, protocol.GuardianLiveStarted)]
    resumed = [e for e in seen if isinstance(e, ConnectionEvent) and e.session == code]
    assert again or resumed
    if again:  # the seat came back from a snapshot
        assert again[-1].resume_token != before.token and again[-1].state == {"page": 2}
    assert room_data(seen)[-1] == "after"


async def test_a_guardian_gets_what_it_missed_while_away(auth, autojump_clock) -> None:
    seen, _, _ = await _watched_across_a_drop(auth)
    assert room_data(seen) == ["while away", "after"]


async def test_a_user_notice_reaches_every_connection_of_the_user(nursery) -> None:
    harness = await start_tcp(nursery, **AUTH)
    url = f"ws://127.0.0.1:{harness.server.port}/ws"
    api = f"http://127.0.0.1:{harness.server.admin_port}/api/v1"
    with trio.fail_after(TCP_GUARD):
        async with (
            connect(url, token_provider=Provider("mum")) as phone,
            connect(url, token_provider=Provider("mum")) as laptop,
            connect(url, token_provider=Provider("dad")) as dad,
            httpx.AsyncClient(timeout=TCP_GUARD) as http,
        ):
            await phone.create_session()  # seated or not, every connection gets it
            sent = await http.post(
                f"{api}/users/mum/notify", json={"topic": "invite", "data": {"code": "ABC123"}}
            )
            assert sent.status_code == 200 and sent.json()["delivered"] == 2
            for client in (phone, laptop):
                notice = (await until(client, lambda e: isinstance(e, protocol.UserNotice)))[-1]
                assert (notice.topic, notice.data) == ("invite", {"code": "ABC123"})
                assert notice.at
            await dad.request("ping")  # a round trip after the notice went out
            with pytest.raises(trio.WouldBlock):
                while True:  # dad got nothing but his connected event
                    event = dad.events.receive_nowait()
                    assert isinstance(event, ConnectionEvent), event
