"""Resume tokens: ``CODE.PARTICIPANT_ID.SECRET``. Issued, parsed and checked here only.

The server keeps only the SHA-256 of the secret, so a stored session never holds a usable token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

import attrs

SECRET_BYTES: Final = 24  # 192 bits


@attrs.frozen
class ResumeToken:
    """A parsed token. ``str()`` gives its wire form."""

    code: str
    participant_id: str
    secret: str

    def __str__(self) -> str:
        return f"{self.code}.{self.participant_id}.{self.secret}"


def new_secret(random_bytes: bytes) -> str:
    """The secret part of a token, from ``SECRET_BYTES`` random bytes."""
    return base64.urlsafe_b64encode(random_bytes).decode().rstrip("=")


def hash_secret(secret: str) -> str:
    """What the server stores instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> ResumeToken | None:
    """The parts of a token, or ``None`` when it is not of the token's shape."""
    code, _, rest = token.partition(".")
    pid, _, secret = rest.partition(".")
    if not (code and pid and secret):
        return None
    return ResumeToken(code, pid, secret)


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Whether ``secret`` is the one ``stored_hash`` was made from (constant time)."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)
