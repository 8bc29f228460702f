"""Who a connection is: the ``hello`` token, verified as a JWT (PyJWT) when a key is configured.

Keys (``Config``):

- ``jwt_secret``: HS256, a shared secret of at least 32 bytes (RFC 7518, 3.2).
- ``jwt_public_key``: the path of a file read once, at start-up: a PEM public key (RSA of at
  least 2048 bits -> RS256; EC on P-256 -> ES256) or a JWKS (``{"keys": [...]}``), where each
  key's ``kty``/``crv`` decides its algorithm (``RSA`` -> RS256, ``EC``/``P-256`` -> ES256).

Both may be set. The ``alg`` in the token's header picks the key, but an HS256 token is only
ever checked with the secret and an RS256/ES256 token only with a public key of that algorithm:
each ``jwt.decode`` gets one key object and a one-element ``algorithms`` list, so a token signed
with the public key's bytes as an HMAC secret is refused (HS/RS confusion). ``alg: none`` and any
algorithm without a configured key are refused.

Claims, checked here against the caller's ``now`` (logic never reads the wall clock: PyJWT's own
time checks are off):

- ``sub``: required, a non-empty string of at most 256 characters; it is the user id.
- ``exp``: optional (an issuer that sets none issues tokens valid until its key changes); when
  present the token is refused once ``now >= exp + jwt_leeway``.
- ``nbf``: optional; when present the token is refused while ``now < nbf - jwt_leeway``.
- ``aud``: required and must contain ``jwt_audience`` when that is set; ignored otherwise.
- ``iss``: required and must equal ``jwt_issuer`` when that is set; ignored otherwise.
- ``name``: optional display name, used when it is a non-empty string of at most 256 characters.

Without any key (development), every token is accepted unverified and names a stable user.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, final

import attrs
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.types import Options

from actors import Config

logger = logging.getLogger(__name__)

MAX_TOKEN_LENGTH: Final = 16 * 1024  # characters: longer tokens are refused before parsing
MAX_ID_LENGTH: Final = 256  # characters of a sub (user id) or name claim
MIN_SECRET_BYTES: Final = 32  # an HS256 secret's minimum, RFC 7518 section 3.2
MIN_RSA_BITS: Final = 2048  # an RS256 key's minimum, NIST SP 800-131A

# PyJWT checks the signature only: time, audience, issuer and subject are checked here.
_SIGNATURE_ONLY: Final[Options] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}

_PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@attrs.frozen
class Identity:
    """Who a connection is, as its ``hello`` token says.

    ``user_id`` is the token's ``sub`` (or, without keys, a digest of the token); ``None`` for
    a connection without a token. ``anonymous`` is true only when keys are configured and the
    connection was admitted without a token (``allow_anonymous``). ``expires_at`` is the
    token's ``exp`` in wall seconds, ``None`` when it has none.
    """

    user_id: str | None
    name: str | None
    anonymous: bool
    expires_at: float | None


class AuthError(Exception):
    """A ``hello`` token was refused; ``reason`` is a short lower-case message for the client.

    Reasons: ``token required``, ``token too long``, ``malformed token``, ``unsupported
    algorithm``, ``unknown key id``, ``bad signature``, ``token expired``, ``token not yet
    valid``, ``missing claim: <name>``, ``invalid claim: <name>``, ``wrong audience``,
    ``wrong issuer``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"AuthError({self.reason!r})"


@attrs.frozen
class _Key:
    """A configured verification key: the algorithm it verifies, and its JWKS ``kid`` if any."""

    algorithm: str
    kid: str | None
    key: _PublicKey | bytes


def _read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


@final
class Authenticator:
    """Verifies ``hello`` tokens against the keys configured at start-up.

    Args:
        config: ``jwt_secret``, ``jwt_public_key``, ``jwt_audience``, ``jwt_issuer``,
            ``jwt_leeway`` and ``allow_anonymous`` are read.
        read_file: reads the key file named by ``jwt_public_key`` (tests inject one).

    Raises:
        ValueError: the secret is too short, or the key file cannot be read or holds no usable
            key; the message names the file.
    """

    def __init__(self, config: Config, *, read_file: Callable[[str], bytes] = _read_bytes) -> None:
        self._audience = config.jwt_audience
        self._issuer = config.jwt_issuer
        self._leeway = config.jwt_leeway
        self._allow_anonymous = config.allow_anonymous
        keys: list[_Key] = []
        if config.jwt_secret:
            secret = config.jwt_secret.encode()
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"jwt_secret must be at least {MIN_SECRET_BYTES} bytes, not {len(secret)}"
                )
            keys.append(_Key("HS256", None, secret))
        if config.jwt_public_key:
            keys.extend(_load_public_keys(config.jwt_public_key, read_file))
        self._keys: tuple[_Key, ...] = tuple(keys)
        self.enabled: bool = bool(keys)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms a token may be signed with, in a stable order (for the start-up log)."""
        return tuple(sorted({key.algorithm for key in self._keys}))

    def verify(self, token: str | None, *, now: float) -> Identity:
        """The identity a ``hello`` token proves, at wall time ``now`` (seconds).

        Without keys (``enabled`` false) nothing is verified: a token names the user
        ``"u_" + sha256(token)[:20]`` (same token, same user), no token gives ``user_id`` None.
        With keys, no token is refused unless ``allow_anonymous`` (then an anonymous identity).

        Raises:
            AuthError: the token is refused; its ``reason`` says why.
        """
        if not self.enabled:
            user_id = None if token is None else "u_" + _digest(token)
            return Identity(user_id, None, anonymous=False, expires_at=None)
        if token is None:
            if self._allow_anonymous:
                return Identity(None, None, anonymous=True, expires_at=None)
            raise AuthError("token required")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("token too long")
        claims = self._decode(token)
        return self._identity(claims, now)

    def _decode(self, token: str) -> dict[str, Any]:
        """The token's claims once its signature is checked with the key its header selects."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        key = self._select(header)
        try:
            return jwt.decode(token, key.key, algorithms=[key.algorithm], options=_SIGNATURE_ONLY)
        except jwt.InvalidSignatureError:
            raise AuthError("bad signature") from None
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None

    def _select(self, header: dict[str, Any]) -> _Key:
        """The one key that may verify a token with this header."""
        algorithm = header.get("alg")
        candidates = [key for key in self._keys if key.algorithm == algorithm]
        if not candidates:
            raise AuthError("unsupported algorithm")
        kid = header.get("kid")
        named = [key for key in candidates if kid is not None and key.kid == kid]
        if named:
            return named[0]
        # Without a matching kid, only an unambiguous key will do: the only one of its
        # algorithm, and not a JWKS key named otherwise than the token says.
        if len(candidates) == 1 and (kid is None or candidates[0].kid is None):
            return candidates[0]
        raise AuthError("unknown key id")

    def _identity(self, claims: dict[str, Any], now: float) -> Identity:
        """Check the claims against the configuration and ``now``."""
        sub = claims.get("sub")
        if sub is None:
            raise AuthError("missing claim: sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= MAX_ID_LENGTH:
            raise AuthError("invalid claim: sub")
        exp = _time_claim(claims, "exp")
        if exp is not None and now >= exp + self._leeway:
            raise AuthError("token expired")
        nbf = _time_claim(claims, "nbf")
        if nbf is not None and now < nbf - self._leeway:
            raise AuthError("token not yet valid")
        if self._audience:
            self._check_audience(claims)
        if self._issuer:
            if "iss" not in claims:
                raise AuthError("missing claim: iss")
            if claims["iss"] != self._issuer:
                raise AuthError("wrong issuer")
        name = claims.get("name")
        if not (isinstance(name, str) and 0 < len(name) <= MAX_ID_LENGTH):
            name = None
        return Identity(sub, name, anonymous=False, expires_at=exp)

    def _check_audience(self, claims: dict[str, Any]) -> None:
        """``aud`` (a string or a list of strings) must name the configured audience."""
        if "aud" not in claims:
            raise AuthError("missing claim: aud")
        aud = claims["aud"]
        audiences = aud if isinstance(aud, list) else [aud]
        if self._audience not in audiences:
            raise AuthError("wrong audience")


def _time_claim(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim (seconds since the epoch), ``None`` when absent."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(f"invalid claim: {name}")
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond any float
        raise AuthError(f"invalid claim: {name}") from None
    if not math.isfinite(seconds):  # NaN would compare false with everything: never expire
        raise AuthError(f"invalid claim: {name}")
    return seconds


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:20]


# ------------------------------------------------------------------------------ loading keys


def _load_public_keys(path: str, read_file: Callable[[str], bytes]) -> list[_Key]:
    """The keys in a PEM public key or JWKS file.

    Raises:
        ValueError: the file cannot be read or holds no usable key.
    """
    try:
        data = read_file(path)
    except OSError as exc:
        raise ValueError(f"cannot read the JWT public key file {path}: {exc.strerror}") from None
    if data.lstrip().startswith(b"{"):
        return _jwks_keys(path, data)
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ValueError(
            f"JWT public key file {path}: neither a PEM public key nor a JWKS"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"JWT public key file {path}: {_unsupported(key)}")
    algorithm = _algorithm_of(key)
    if algorithm is None:
        raise ValueError(f"JWT public key file {path}: {_unsupported(key)}")
    return [_Key(algorithm, None, key)]


def _jwks_keys(path: str, data: bytes) -> list[_Key]:
    """The signing keys of a JWKS document; keys of other kinds are skipped with a warning."""
    try:
        document = json.loads(data)
        entries = document["keys"]
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"JWT public key file {path}: not a JWKS (no keys list)") from None
    if not isinstance(entries, list):
        raise ValueError(f"JWT public key file {path}: not a JWKS (no keys list)")
    keys: list[_Key] = []
    for index, entry in enumerate(entries):
        key = _jwk(path, index, entry)
        if key is None:
            continue
        if key.kid is not None and any(other.kid == key.kid for other in keys):
            raise ValueError(f"JWT public key file {path}: two keys have kid {key.kid!r}")
        keys.append(key)
    if not keys:
        raise ValueError(f"JWT public key file {path}: no RS256 or ES256 signing key")
    return keys


def _jwk(path: str, index: int, entry: object) -> _Key | None:
    """One JWKS entry as a key; ``None`` (logged) for an entry this server cannot use."""
    if not isinstance(entry, dict):
        raise ValueError(f"JWT public key file {path}: key {index} is not an object")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError(f"JWT public key file {path}: key {index} has a non-string kid")
    if entry.get("use", "sig") != "sig":
        return None  # an encryption key: not for us
    kty, crv = entry.get("kty"), entry.get("crv")
    algorithm = "RS256" if kty == "RSA" else "ES256" if (kty, crv) == ("EC", "P-256") else None
    declared = entry.get("alg", algorithm)
    if algorithm is None or declared != algorithm:
        logger.warning(
            "JWT public key file %s: key %d (kid %s, kty %s, alg %s) skipped: only RS256 and"
            " ES256 are supported",
            path,
            index,
            kid,
            kty,
            declared,
        )
        return None
    loader = RSAAlgorithm if algorithm == "RS256" else ECAlgorithm
    try:
        key = loader.from_jwk(entry)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise ValueError(f"JWT public key file {path}: key {index} is malformed") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"JWT public key file {path}: key {index} is not a public key")
    if _algorithm_of(key) is None:
        raise ValueError(f"JWT public key file {path}: key {index}: {_unsupported(key)}")
    return _Key(algorithm, kid, key)


def _algorithm_of(key: _PublicKey) -> str | None:
    """The algorithm a public key verifies, ``None`` if this server does not accept it."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256" if key.key_size >= MIN_RSA_BITS else None
    return "ES256" if isinstance(key.curve, ec.SECP256R1) else None


def _unsupported(key: object) -> str:
    """Why a public key is refused."""
    if isinstance(key, rsa.RSAPublicKey):
        return f"an RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} are required)"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC key on {key.curve.name} (only P-256, for ES256, is supported)"
    return f"a {type(key).__name__} (only RSA and EC P-256 keys are supported)"
