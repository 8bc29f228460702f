"""Authentication, authorization and abuse limits, end to end over real sockets.

Each attack gets the documented error (docs/security.md), and the sessions of everyone else
lose nothing. Tokens are real JWTs made with PyJWT; the server verifies them with the secret
(HS256) or the public key (RS256) it was started with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import httpx
import jwt
import orjson
import pytest
import trio
import trio_websocket
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client.parser import text_string_to_metric_families

from protocol import CloseCode, ResumeToken, parse_token

from .conftest import Harness, RawClient, start_memory, start_tcp

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
AUDIENCE = "trio-sessions-tests"
ISSUER = "https://issuer.example"


def token(sub: str | None, *, key: Any = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    """A signed hello token for ``sub`` (none: no claim), valid for an hour unless ``claims``
    say otherwise."""
    now = time.time()
    body = {"sub": sub, "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 3600}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


AUTH = {"jwt_secret": SECRET, "jwt_audience": AUDIENCE, "jwt_issuer": ISSUER}


async def refused(harness: Harness, hello_token: str | None) -> tuple[dict[str, Any], int]:
    """The hello error and the close code a connection gets for ``hello_token``."""
    client = await harness.raw()
    fields = {} if hello_token is None else {"token": hello_token}
    error = await client.error("hello", **fields)
    return error, await client.closed()


async def victim(harness: Harness) -> tuple[RawClient, RawClient, str]:
    """An innocent host and participant, to check that an attack costs them nothing."""
    host = await harness.client("host", token=token("victim-host"))
    host.seat = await host.ok("session:create")
    guest = await harness.client("guest", token=token("victim-guest"))
    guest.seat = await guest.ok("session:join", code=host.seat["code"])
    await host.event("session:participantJoined")
    await host.ok("session:createRoom", room="chat")
    for member in (host, guest):
        await member.event("session:roomCreated")
    return host, guest, host.seat["code"]


async def still_served(host: RawClient, guest: RawClient) -> None:
    """The victims' session works, and nothing was lost on the way."""
    await guest.ok("room:message", room="chat", data="still here")
    message = await host.event("room:message")
    assert message["data"] == "still here"
    assert await host.ok("state:patch", patch={"ok": True})


# ------------------------------------------------------------------ authentication


@pytest.mark.parametrize(
    ("why", "make"),
    [
        (
            "forged signature",
            lambda: token("mallory", key="not-the-secret-at-all-but-32-bytes-long"),
        ),
        ("expired", lambda: token("alice", exp=time.time() - 3600)),
        ("not yet valid", lambda: token("alice", nbf=time.time() + 3600)),
        ("wrong audience", lambda: token("alice", aud="another-service")),
        ("wrong issuer", lambda: token("alice", iss="https://evil.example")),
        ("no sub", lambda: token(None)),
        ("garbage", lambda: "not.a.jwt"),
        (
            "alg none",
            lambda: jwt.encode(
                {"sub": "alice", "aud": AUDIENCE, "iss": ISSUER}, None, algorithm="none"
            ),
        ),
    ],
)
async def test_a_bad_hello_token_is_refused_with_4004(nursery, why, make) -> None:
    harness = await start_tcp(nursery, **AUTH)
    host, guest, _ = await victim(harness)
    error, code = await refused(harness, make())
    assert error["code"] == "unauthorized", why
    assert code == CloseCode.UNAUTHORIZED
    await still_served(host, guest)


async def test_hs_rs_confusion_is_refused(nursery, tmp_path) -> None:
    """A token signed with HS256 using the server's *public* key as the secret: the classic
    confusion attack. The server knows only the public key, so it must verify RS256 only."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(public_pem)
    harness = await start_tcp(
        nursery, jwt_public_key=str(key_file), jwt_audience=AUDIENCE, jwt_issuer=ISSUER
    )
    good = await harness.client(token=token("alice", key=private, algorithm="RS256"))
    assert good.hello["user_id"] == "alice"
    # PyJWT itself refuses to sign HS256 with a PEM key: build the token by hand
    signing_input = b".".join(
        _b64(orjson.dumps(part))
        for part in (
            {"alg": "HS256", "typ": "JWT"},
            {"sub": "mallory", "aud": AUDIENCE, "iss": ISSUER, "exp": time.time() + 3600},
        )
    )
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + _b64(signature)).decode()
    error, code = await refused(harness, forged)
    assert error["code"] == "unauthorized"
    assert code == CloseCode.UNAUTHORIZED


async def test_no_token_is_refused_unless_anonymous_is_allowed(nursery) -> None:
    strict = await start_tcp(nursery, **AUTH)
    error, code = await refused(strict, None)
    assert (error["code"], code) == ("unauthorized", CloseCode.UNAUTHORIZED)

    lenient = await start_tcp(nursery, **AUTH, allow_anonymous=True)
    anonymous = await lenient.client("anon")
    assert anonymous.hello["anonymous"] is True
    assert (await anonymous.error("session:create"))["code"] == "forbidden"
    assert (await anonymous.error("live:start"))["code"] == "forbidden"
    host = await lenient.client("host", token=token("teacher"))
    closed_door = (await host.ok("session:create"))["code"]
    other = await lenient.client("host2", token=token("teacher-2"))
    open_door = (await other.ok("session:create", anonymous=True))["code"]
    assert (await anonymous.error("session:join", code=closed_door))["code"] == "forbidden"
    seat = await anonymous.ok("session:join", code=open_door)
    assert seat["role"] == "participant"


async def test_a_refreshed_token_keeps_the_identity(nursery) -> None:
    harness = await start_tcp(nursery, **AUTH)
    first = await harness.client(token=token("ward-7", iat=time.time() - 60))
    created = await first.ok("session:create")
    again = await harness.client(token=token("ward-7", jti="another-token"))
    assert again.hello["user_id"] == first.hello["user_id"] == "ward-7"
    reused = await again.ok("session:create")
    assert reused["code"] == created["code"] and reused["reused"] is True


async def test_a_token_that_expires_closes_the_link_with_4005_and_the_seat_waits(
    nursery, autojump_clock
) -> None:
    harness = await start_memory(nursery, **AUTH)
    host = await harness.client("host", token=token("host"))
    host.seat = await host.ok("session:create")
    guest = await harness.client("guest", token=token("guest", exp=time.time() + 30))
    assert guest.hello["expires_at"]
    await guest.ok("session:join", code=host.seat["code"])
    await host.event("session:participantJoined")
    assert await guest.closed() == CloseCode.TOKEN_EXPIRED
    away = await host.event("session:participantAway")  # the seat is in its grace period
    assert away["participant_id"]


async def test_auth_refresh_moves_the_expiry_and_keeps_the_user(nursery, autojump_clock) -> None:
    harness = await start_memory(nursery, **AUTH)
    client = await harness.client(token=token("alice", exp=time.time() + 30))
    await trio.sleep(20)
    refreshed = await client.ok("auth:refresh", token=token("alice", exp=time.time() + 3600))
    assert refreshed["user_id"] == "alice" and refreshed["expires_at"]
    stolen = await client.error("auth:refresh", token=token("bob"))
    assert stolen["code"] == "forbidden"
    bad = await client.error(
        "auth:refresh", token=token("alice", key="a-wrong-secret-that-is-32-bytes-long")
    )
    assert bad["code"] == "unauthorized"
    await trio.sleep(600)  # long past the first token's expiry
    assert await client.ok("ping") == {}


# ------------------------------------------------------------------ authorization


async def test_a_participant_gets_forbidden_for_every_host_request(nursery) -> None:
    harness = await start_tcp(nursery, **AUTH)
    host, guest, _ = await victim(harness)
    for kind, fields in [
        ("session:close", {}),
        ("session:createRoom", {"room": "mine"}),
        ("session:closeRoom", {"room": "chat"}),
        ("state:set", {"state": {"owned": True}}),
        ("state:patch", {"patch": {"owned": True}}),
        ("live:stop", {}),
    ]:
        error = await guest.error(kind, **fields)
        assert error["code"] == "forbidden", kind
    await still_served(host, guest)


async def test_a_resume_token_works_only_for_its_user_and_session(nursery) -> None:
    harness = await start_tcp(nursery, **AUTH)
    host, guest, _ = await victim(harness)
    thief = await harness.client("thief", token=token("thief"))
    error = await thief.error(
        "session:resume", token=guest.seat["resume_token"], last_seq=0, epoch=guest.seat["epoch"]
    )
    assert error["code"] == "unauthorized"
    # the same token's secret and seat, aimed at another session
    other_host = await harness.client(token=token("other-host"))
    other = await other_host.ok("session:create")
    parsed = parse_token(guest.seat["resume_token"])
    assert parsed is not None
    moved = str(ResumeToken(other["code"], parsed.participant_id, parsed.secret))
    owner = await harness.client(token=token("victim-guest"))
    assert (await owner.error("session:resume", token=moved))["code"] == "unauthorized"
    # its own user may take it back
    back = await owner.ok("session:resume", token=guest.seat["resume_token"])
    assert back["participant_id"] == guest.seat["participant_id"]
    await host.ok("state:patch", patch={"after": "theft"})


async def test_allowed_users_and_the_hosting_limit(nursery) -> None:
    harness = await start_tcp(nursery, **AUTH, max_sessions_per_host=2)
    host = await harness.client(token=token("teacher"))
    first = await host.ok("session:create", allowed_users=["pupil-1"])
    second = await host.ok("session:create", another=True)
    assert second["code"] != first["code"]
    error = await host.error("session:create", another=True)
    assert error["code"] == "session_limit" and error["limit"] == 2
    pupil = await harness.client(token=token("pupil-1"))
    assert (await pupil.ok("session:join", code=first["code"]))["role"] == "participant"
    stranger = await harness.client(token=token("stranger"))
    assert (await stranger.error("session:join", code=first["code"]))["code"] == "forbidden"


# ------------------------------------------------------------------ abuse limits


async def from_address(harness: Harness, address: str, user: str) -> RawClient:
    """A client behind the trusted proxy on loopback, as ``address`` (X-Forwarded-For)."""
    stream = await trio.open_tcp_stream("127.0.0.1", harness.server.port)
    ws = await trio_websocket.wrap_client_stream(
        harness.nursery,
        stream,
        "127.0.0.1",
        "/ws",
        extra_headers=[(b"X-Forwarded-For", f"198.51.100.1, {address}".encode())],
    )
    client = RawClient(ws, stream, 30.0)
    await harness.nursery.start(client.pump)
    client.hello = await client.ok("hello", token=token(user))
    return client


async def test_guessing_codes_on_one_connection_closes_it(nursery) -> None:
    harness = await start_tcp(nursery, **AUTH)
    host, guest, _ = await victim(harness)
    guesser = await harness.client(token=token("guesser"))
    for guess in ["AAAAAA", "BBBBBB", "CCCCCC", "DDDDDD", "EEEEEE"]:
        assert (await guesser.error("session:join", code=guess))["code"] == "not_found"
    assert await guesser.closed() == CloseCode.POLICY_VIOLATION
    await still_served(host, guest)


async def test_an_address_that_keeps_guessing_is_locked_out_even_for_a_real_code(
    nursery,
) -> None:
    harness = await start_tcp(nursery, **AUTH, trusted_proxy="127.0.0.1")
    host, guest, code = await victim(harness)
    for round_ in range(4):  # 4 connections x 5 failures = the address's budget of 20
        guesser = await from_address(harness, "203.0.113.9", f"guesser-{round_}")
        for i in range(5):
            error = await guesser.error("session:join", code=f"ZZZZ{round_}{i}")
            assert error["code"] == "not_found"
        assert await guesser.closed() == CloseCode.POLICY_VIOLATION
    locked = await from_address(harness, "203.0.113.9", "guesser-4")
    error = await locked.error("session:join", code=code)  # a live code: no oracle
    assert error["code"] == "rate_limited"
    assert 55_000 <= error["retry_after_ms"] <= 60_000
    # another address behind the same proxy is not held to it
    neighbour = await from_address(harness, "203.0.113.10", "neighbour")
    assert (await neighbour.ok("session:join", code=code))["role"] == "participant"
    await host.event("session:participantJoined")
    await still_served(host, guest)
    async with httpx.AsyncClient(timeout=30) as http:  # counted in /metrics, on the admin port
        scraped = await http.get(f"http://127.0.0.1:{harness.server.admin_port}/metrics")
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
    }
    assert samples["trio_sessions_join_failures_total"] == 20
    assert samples["trio_sessions_join_lockouts_total"] == 1
    assert samples["trio_sessions_joins_locked_out_total"] == 1


async def test_a_connection_flood_from_one_address_is_cut_off_with_1013(
    nursery, autojump_clock
) -> None:
    harness = await start_memory(nursery, **AUTH, connection_burst=50, connections_per_second=10)
    host = await harness.client("host", token=token("host"))
    host.seat = await host.ok("session:create")
    accepted, refused_codes = 0, []
    for i in range(200):
        client = await harness.raw()
        try:
            await client.send({"type": "hello", "ref": 1, "token": token(f"flooder-{i}")})
            await client.receive()
            accepted += 1
        except trio_websocket.ConnectionClosed as closed:
            refused_codes.append(closed.reason.code)
    assert accepted <= 50 and len(refused_codes) >= 150
    assert set(refused_codes) == {1013}
    assert await host.ok("state:patch", patch={"after": "flood"})


async def test_one_user_cannot_create_sessions_in_a_loop(nursery, autojump_clock) -> None:
    harness = await start_memory(nursery, **AUTH)
    spammer = await harness.client(token=token("spammer"))
    codes = {(await spammer.ok("session:create", fresh=True))["code"] for _ in range(10)}
    assert len(codes) == 10
    error = await spammer.error("session:create", fresh=True)
    assert error["code"] == "rate_limited" and error["retry_after_ms"] > 0
    await trio.sleep(error["retry_after_ms"] / 1000)
    assert await spammer.ok("session:create", fresh=True)


async def test_one_user_has_a_connection_cap(nursery, autojump_clock) -> None:
    harness = await start_memory(nursery, **AUTH, max_connections_per_user=3)
    tabs = [await harness.client(token=token("many-tabs")) for _ in range(3)]
    extra = await harness.raw()
    error = await extra.error("hello", token=token("many-tabs"))
    assert error["code"] == "rate_limited"
    assert await extra.closed() == 1013
    await tabs[0].ws.aclose()
    again = await harness.raw()  # one closed: room for one more
    assert (await again.ok("hello", token=token("many-tabs")))["user_id"] == "many-tabs"


async def test_a_token_within_the_leeway_lasts_until_the_leeway_runs_out(
    nursery, autojump_clock
) -> None:
    harness = await start_memory(nursery, **AUTH, jwt_leeway=30)
    client = await harness.client(token=token("late", exp=time.time() - 5))
    started = trio.current_time()
    assert client.hello["expires_at"]
    assert await client.closed() == CloseCode.TOKEN_EXPIRED
    assert trio.current_time() - started == pytest.approx(25, abs=1)
