"""Hello-token verification (``gateway/_auth.py``) with real keys and real PyJWT tokens.

Time is the ``now`` each test passes: nothing here reads a clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from actors import Config
from gateway._auth import MAX_TOKEN_LENGTH, Authenticator, AuthError, Identity

NOW = 1_767_225_600.0  # wall seconds every test verifies at
LEEWAY = 30.0  # seconds: Config's default jwt_leeway
SECRET = "s3cret-" + "x" * 40  # an HS256 secret of at least 32 bytes


# ----------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The PEM of a private key's public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_file(tmp_path: Path, content: bytes | str, name: str = "key.pem") -> str:
    """Write a key file; its path as Config wants it."""
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str | None) -> dict[str, Any]:
    """A private key's public half as a JWK, with ``kid``."""
    if isinstance(key, rsa.RSAPrivateKey):
        entry = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        entry = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    if kid is not None:
        entry["kid"] = kid
    return entry


def claims(**changes: object) -> dict[str, Any]:
    """Valid claims for user ``alice``, issued now, valid for an hour; None removes a claim."""
    values: dict[str, Any] = {"sub": "alice", "iat": NOW, "exp": NOW + 3600, "name": "Alice"}
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_built(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT assembled by hand (PyJWT refuses to build the malicious ones)."""
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


def hs256_with(secret: bytes, payload: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """An HS256 token signed with any bytes as the secret, PEM included."""
    head = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def refused(auth: Authenticator, token: str | None, reason: str, now: float = NOW) -> None:
    """The token is refused with exactly this reason."""
    with pytest.raises(AuthError, match=rf"^{re.escape(reason)}$") as caught:
        auth.verify(token, now=now)
    assert caught.value.reason == reason


@pytest.fixture
def hs_auth() -> Authenticator:
    return Authenticator(Config(jwt_secret=SECRET))


@pytest.fixture
def rs_auth(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Authenticator:
    return Authenticator(Config(jwt_public_key=key_file(tmp_path, pem(rsa_key))))


# ------------------------------------------------------------------------------ valid tokens


def test_a_valid_hs256_token_names_its_subject(hs_auth: Authenticator) -> None:
    """An HS256 token signed with the secret gives its sub, name and exp."""
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert hs_auth.enabled and hs_auth.algorithms == ("HS256",)
    assert hs_auth.verify(token, now=NOW) == Identity(
        "alice", "Alice", anonymous=False, expires_at=NOW + 3600
    )


def test_a_valid_rs256_token_is_verified_with_a_pem_key(
    rs_auth: Authenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    """An RS256 token is verified with the PEM public key from the file."""
    token = jwt.encode(claims(name=None), rsa_key, algorithm="RS256")
    assert rs_auth.algorithms == ("RS256",)
    assert rs_auth.verify(token, now=NOW) == Identity("alice", None, False, NOW + 3600)


def test_a_valid_es256_token_is_verified_with_a_pem_key(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """An ES256 token is verified with a P-256 PEM public key."""
    auth = Authenticator(Config(jwt_public_key=key_file(tmp_path, pem(ec_key))))
    token = jwt.encode(claims(), ec_key, algorithm="ES256")
    assert auth.algorithms == ("ES256",)
    assert auth.verify(token, now=NOW).user_id == "alice"


def test_a_token_without_exp_is_valid_and_has_no_expiry(hs_auth: Authenticator) -> None:
    """exp is optional: without it the identity has no expires_at."""
    token = jwt.encode(claims(exp=None), SECRET, algorithm="HS256")
    assert hs_auth.verify(token, now=NOW + 10 * 365 * 86400).expires_at is None


def test_a_refreshed_token_names_the_same_user(hs_auth: Authenticator) -> None:
    """A new token for the same sub (new iat and exp) is the same user."""
    first = jwt.encode(claims(), SECRET, algorithm="HS256")
    later = NOW + 3000
    refreshed = jwt.encode(claims(iat=later, exp=later + 3600), SECRET, algorithm="HS256")
    assert first != refreshed
    assert hs_auth.verify(first, now=NOW).user_id == hs_auth.verify(refreshed, now=later).user_id


def test_a_name_that_is_not_a_short_string_is_ignored(hs_auth: Authenticator) -> None:
    """A name claim that is not a non-empty string of at most 256 characters is dropped."""
    for name in (42, "", "n" * 257, ["Alice"]):
        token = jwt.encode(claims(name=name), SECRET, algorithm="HS256")
        assert hs_auth.verify(token, now=NOW).name is None
    token = jwt.encode(claims(name="n" * 256), SECRET, algorithm="HS256")
    assert hs_auth.verify(token, now=NOW).name == "n" * 256


# ------------------------------------------------------------------------------------- JWKS


def test_a_jwks_key_is_picked_by_kid(
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    """Each token is verified with the JWKS key its header's kid names."""
    jwks = {"keys": [jwk(rsa_key, "r1"), jwk(other_rsa_key, "r2"), jwk(ec_key, "e1")]}
    auth = Authenticator(Config(jwt_public_key=key_file(tmp_path, json.dumps(jwks), "k.json")))
    assert auth.algorithms == ("ES256", "RS256")
    for key, kid, algorithm, sub in (
        (rsa_key, "r1", "RS256", "one"),
        (other_rsa_key, "r2", "RS256", "two"),
        (ec_key, "e1", "ES256", "three"),
    ):
        token = jwt.encode(claims(sub=sub), key, algorithm=algorithm, headers={"kid": kid})
        assert auth.verify(token, now=NOW).user_id == sub
    # Signed by r1 but naming r2: checked with r2's key only.
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "r2"})
    refused(auth, token, "bad signature")
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "r9"})
    refused(auth, token, "unknown key id")
    # Two RS256 keys: a token without kid is ambiguous.
    refused(auth, jwt.encode(claims(), rsa_key, algorithm="RS256"), "unknown key id")
    # One ES256 key: a token without kid can only mean it.
    assert auth.verify(jwt.encode(claims(), ec_key, algorithm="ES256"), now=NOW).user_id


def test_a_jwks_keeps_only_signing_keys_it_supports(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    """Encryption keys are ignored, unsupported kinds skipped with a warning."""
    encryption = {**jwk(rsa_key, "enc"), "use": "enc"}
    hmac_key = {"kty": "oct", "k": b64(b"x" * 32), "kid": "oct"}
    ps256 = {**jwk(rsa_key, "ps"), "alg": "PS256"}
    jwks = {"keys": [encryption, hmac_key, ps256, jwk(rsa_key, "sig")]}
    auth = Authenticator(Config(jwt_public_key=key_file(tmp_path, json.dumps(jwks), "k.json")))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "sig"})
    assert auth.verify(token, now=NOW).user_id == "alice"
    for kid in ("enc", "oct", "ps"):
        token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": kid})
        refused(auth, token, "unknown key id")
    assert [r.levelname for r in caplog.records if "skipped" in r.getMessage()] == ["WARNING"] * 2


# ------------------------------------------------------------------------------ bad tokens


def test_a_forged_signature_is_refused(
    hs_auth: Authenticator,
    rs_auth: Authenticator,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
) -> None:
    """Signed with another key, or changed after signing: refused."""
    refused(hs_auth, jwt.encode(claims(), "another-" + SECRET, algorithm="HS256"), "bad signature")
    refused(rs_auth, jwt.encode(claims(), other_rsa_key, algorithm="RS256"), "bad signature")
    head, _, signature = jwt.encode(claims(), rsa_key, algorithm="RS256").split(".")
    tampered = b64(json.dumps(claims(sub="admin")).encode())
    refused(rs_auth, f"{head}.{tampered}.{signature}", "bad signature")


def test_an_expired_token_is_refused_after_the_leeway(hs_auth: Authenticator) -> None:
    """exp is enforced against the caller's now, with jwt_leeway of slack."""
    token = jwt.encode(claims(exp=NOW - 100), SECRET, algorithm="HS256")
    assert hs_auth.verify(token, now=NOW - 100 + LEEWAY - 1).user_id == "alice"
    refused(hs_auth, token, "token expired", now=NOW - 100 + LEEWAY)
    refused(hs_auth, token, "token expired", now=NOW)


def test_a_token_not_yet_valid_is_refused_before_the_leeway(hs_auth: Authenticator) -> None:
    """nbf is enforced against the caller's now, with jwt_leeway of slack."""
    token = jwt.encode(claims(nbf=NOW + 100), SECRET, algorithm="HS256")
    refused(hs_auth, token, "token not yet valid", now=NOW)
    refused(hs_auth, token, "token not yet valid", now=NOW + 100 - LEEWAY - 1)
    assert hs_auth.verify(token, now=NOW + 100 - LEEWAY).user_id == "alice"


def test_the_leeway_is_configurable() -> None:
    """A leeway of 0 refuses a token the second it expires."""
    auth = Authenticator(Config(jwt_secret=SECRET, jwt_leeway=0.0))
    token = jwt.encode(claims(exp=NOW), SECRET, algorithm="HS256")
    assert auth.verify(token, now=NOW - 0.5).user_id == "alice"
    refused(auth, token, "token expired", now=NOW)


def test_time_claims_must_be_numbers(hs_auth: Authenticator) -> None:
    """An exp or nbf that is not a number is refused rather than ignored."""
    for name in ("exp", "nbf"):
        for value in ("tomorrow", True, 10**400, math.nan, math.inf):
            token = jwt.encode(claims(**{name: value}), SECRET, algorithm="HS256")
            refused(hs_auth, token, f"invalid claim: {name}")


def test_the_audience_is_checked_only_when_configured() -> None:
    """With jwt_audience, aud must name it (a string or one of a list); without, aud is ignored."""
    auth = Authenticator(Config(jwt_secret=SECRET, jwt_audience="sessions"))
    for aud in ("sessions", ["other", "sessions"]):
        assert auth.verify(jwt.encode(claims(aud=aud), SECRET), now=NOW).user_id == "alice"
    refused(auth, jwt.encode(claims(aud="other"), SECRET), "wrong audience")
    refused(auth, jwt.encode(claims(aud=["other"]), SECRET), "wrong audience")
    refused(auth, jwt.encode(claims(), SECRET), "missing claim: aud")
    unchecked = Authenticator(Config(jwt_secret=SECRET))
    assert unchecked.verify(jwt.encode(claims(aud="other"), SECRET), now=NOW).user_id == "alice"


def test_the_issuer_is_checked_only_when_configured() -> None:
    """With jwt_issuer, iss must equal it; without, iss is ignored."""
    auth = Authenticator(Config(jwt_secret=SECRET, jwt_issuer="https://id.example"))
    token = jwt.encode(claims(iss="https://id.example"), SECRET)
    assert auth.verify(token, now=NOW).user_id == "alice"
    refused(auth, jwt.encode(claims(iss="https://evil.example"), SECRET), "wrong issuer")
    refused(auth, jwt.encode(claims(), SECRET), "missing claim: iss")
    unchecked = Authenticator(Config(jwt_secret=SECRET))
    assert unchecked.verify(jwt.encode(claims(iss="anyone"), SECRET), now=NOW).user_id == "alice"


def test_sub_is_required_and_bounded(hs_auth: Authenticator) -> None:
    """sub must be a non-empty string of at most 256 characters."""
    refused(hs_auth, jwt.encode(claims(sub=None), SECRET), "missing claim: sub")
    for sub in ("", "u" * 257, 42, ["alice"]):
        refused(hs_auth, jwt.encode(claims(sub=sub), SECRET), "invalid claim: sub")
    assert hs_auth.verify(jwt.encode(claims(sub="u" * 256), SECRET), now=NOW).user_id == "u" * 256


def test_alg_none_is_refused(hs_auth: Authenticator, rs_auth: Authenticator) -> None:
    """An unsigned token (alg none, any spelling) is never accepted."""
    for alg in ("none", "None", "NONE"):
        token = hand_built({"alg": alg, "typ": "JWT"}, claims())
        refused(hs_auth, token, "unsupported algorithm")
        refused(rs_auth, token, "unsupported algorithm")


def test_an_hs256_token_signed_with_the_public_key_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, rs_auth: Authenticator
) -> None:
    """HS/RS confusion: the public PEM used as an HMAC secret never verifies a token."""
    token = hs256_with(pem(rsa_key), claims())
    refused(rs_auth, token, "unsupported algorithm")  # no secret configured: HS256 is not on
    both = Authenticator(
        Config(jwt_secret=SECRET, jwt_public_key=key_file(tmp_path, pem(rsa_key), "both.pem"))
    )
    refused(both, token, "bad signature")  # checked with the secret only
    refused(both, hs256_with(pem(rsa_key), claims(), {"alg": "HS256", "kid": "x"}), "bad signature")


def test_with_both_keys_each_algorithm_uses_its_own(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A secret and a public key together: HS256 and RS256 tokens both verify."""
    auth = Authenticator(Config(jwt_secret=SECRET, jwt_public_key=key_file(tmp_path, pem(rsa_key))))
    assert auth.algorithms == ("HS256", "RS256")
    hs_token = jwt.encode(claims(sub="hs"), SECRET, algorithm="HS256")
    rs_token = jwt.encode(claims(sub="rs"), rsa_key, algorithm="RS256")
    assert auth.verify(hs_token, now=NOW).user_id == "hs"
    assert auth.verify(rs_token, now=NOW).user_id == "rs"


def test_an_algorithm_without_a_key_is_refused(
    hs_auth: Authenticator,
    rs_auth: Authenticator,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    """A token in an algorithm no configured key verifies is refused before any check."""
    refused(hs_auth, jwt.encode(claims(), rsa_key, algorithm="RS256"), "unsupported algorithm")
    refused(rs_auth, jwt.encode(claims(), SECRET, algorithm="HS256"), "unsupported algorithm")
    refused(rs_auth, jwt.encode(claims(), ec_key, algorithm="ES256"), "unsupported algorithm")
    refused(rs_auth, jwt.encode(claims(), rsa_key, algorithm="RS384"), "unsupported algorithm")
    refused(hs_auth, jwt.encode(claims(), SECRET * 2, algorithm="HS512"), "unsupported algorithm")


def test_garbage_is_a_malformed_token(hs_auth: Authenticator) -> None:
    """Anything that is not a JWS compact token is refused as malformed."""
    for token in ("", "not a token", "a.b.c", "a.b", "...", hand_built({"alg": "HS256"}, {})[:-1]):
        refused(hs_auth, token, "malformed token")
    refused(hs_auth, "e30.e30.", "unsupported algorithm")  # a header without alg
    refused(hs_auth, hand_built({"alg": "HS256"}, claims()), "bad signature")  # no signature
    refused(hs_auth, b64(b"[" * 5000) + ".e30.", "malformed token")
    # A valid signature over a payload that is not a JSON object.
    head = b64(b'{"alg":"HS256"}')
    body = b64(b"[1, 2]")
    signature = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    refused(hs_auth, f"{head}.{body}.{b64(signature)}", "malformed token")


def test_a_huge_token_is_refused_unparsed(hs_auth: Authenticator) -> None:
    """A token over MAX_TOKEN_LENGTH characters is refused before it is decoded."""
    token = jwt.encode(claims(pad="p" * MAX_TOKEN_LENGTH), SECRET)
    refused(hs_auth, token, "token too long")


# --------------------------------------------------------------- development and anonymous


def test_without_keys_any_token_names_a_stable_user() -> None:
    """Dev mode: nothing is verified; same token, same user; no token, no user."""
    auth = Authenticator(Config())
    assert not auth.enabled and auth.algorithms == ()
    digest = hashlib.sha256(b"whatever").hexdigest()[:20]
    assert auth.verify("whatever", now=NOW) == Identity("u_" + digest, None, False, None)
    assert auth.verify("whatever", now=NOW + 1e9).user_id == "u_" + digest
    assert auth.verify("other", now=NOW).user_id != "u_" + digest
    assert auth.verify(None, now=NOW) == Identity(None, None, anonymous=False, expires_at=None)
    expired = jwt.encode(claims(exp=NOW - 1e6), "x" * 32)
    assert (
        auth.verify(expired, now=NOW).user_id
        == "u_" + hashlib.sha256(expired.encode()).hexdigest()[:20]
    )


def test_with_keys_a_token_is_required_unless_anonymous_is_allowed() -> None:
    """No token: refused, or anonymous with allow_anonymous; a bad token is refused either way."""
    refused(Authenticator(Config(jwt_secret=SECRET)), None, "token required")
    auth = Authenticator(Config(jwt_secret=SECRET, allow_anonymous=True))
    assert auth.verify(None, now=NOW) == Identity(None, None, anonymous=True, expires_at=None)
    refused(auth, jwt.encode(claims(), "wrong-" + SECRET), "bad signature")
    assert auth.verify(jwt.encode(claims(), SECRET), now=NOW).anonymous is False


# ---------------------------------------------------------------------------- loading keys


def test_key_problems_are_reported_at_start(tmp_path: Path) -> None:
    """A missing, unreadable or unusable key stops the start with a message naming the file."""
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(
        ValueError, match=rf"^cannot read the JWT public key file {re.escape(missing)}: "
    ):
        Authenticator(Config(jwt_public_key=missing))
    cases = {
        "garbage.pem": (b"not a key", "neither a PEM public key nor a JWKS"),
        "list.json": (b'{"keys": 3}', "not a JWKS (no keys list)"),
        "bad.json": (b"{not json", "not a JWKS (no keys list)"),
        "empty.json": (b'{"keys": []}', "no RS256 or ES256 signing key"),
        "broken.json": (b'{"keys": [{"kty": "RSA", "n": "AQAB"}]}', "key 0 is malformed"),
    }
    for name, (content, message) in cases.items():
        path = key_file(tmp_path, content, name)
        with pytest.raises(
            ValueError, match=rf"^JWT public key file {re.escape(path)}: {re.escape(message)}$"
        ):
            Authenticator(Config(jwt_public_key=path))


def test_weak_or_unsupported_keys_are_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    """Short secrets, small RSA keys, other curves and duplicate kids are refused."""
    with pytest.raises(ValueError, match=r"^jwt_secret must be at least 32 bytes, not 31$"):
        Authenticator(Config(jwt_secret="x" * 31))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    for name, content, message in (
        ("small.pem", pem(small), "an RSA key of 1024 bits (at least 2048 are required)"),
        ("p384.pem", pem(p384), "an EC key on secp384r1 (only P-256, for ES256, is supported)"),
        (
            "small.json",
            json.dumps({"keys": [jwk(small, "s")]}),
            "key 0: an RSA key of 1024 bits (at least 2048 are required)",
        ),
        (
            "dup.json",
            json.dumps({"keys": [jwk(rsa_key, "a"), jwk(rsa_key, "a")]}),
            "two keys have kid 'a'",
        ),
    ):
        path = key_file(tmp_path, content, name)
        with pytest.raises(
            ValueError, match=rf"^JWT public key file {re.escape(path)}: {re.escape(message)}$"
        ):
            Authenticator(Config(jwt_public_key=path))


def test_the_key_file_is_read_once_through_read_file(rsa_key: rsa.RSAPrivateKey) -> None:
    """The key file is read at construction, through the injected reader, and never again."""
    reads: list[str] = []

    def read(path: str) -> bytes:
        reads.append(path)
        return pem(rsa_key)

    auth = Authenticator(Config(jwt_public_key="/keys/sessions.pem"), read_file=read)
    for _ in range(3):
        auth.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"), now=NOW)
    assert reads == ["/keys/sessions.pem"]
