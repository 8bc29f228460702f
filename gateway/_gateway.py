"""What every connection of a server shares: limits, identity checks, the user directory."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import attrs

from ._abuse import AbuseGuard
from ._auth import Authenticator
from ._client_address import TrustedProxies
from ._directory import UserDirectory

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from actors import Config, Environment, SessionHandle, Supervisor
    from store import RelationStore

    from ._counters import Counters


@attrs.frozen(kw_only=True)
class Gateway:
    """The server's edge, as each :class:`Connection` sees it.

    ``relations`` gives a ward's accepted guardians (``None``: no relation store, so a live
    session has no guardians). ``directory`` is the one the supervisor's actors reach users
    through.
    """

    config: Config
    supervisor: Supervisor
    counters: Counters
    env: Environment
    directory: UserDirectory
    auth: Authenticator
    guard: AbuseGuard
    proxies: TrustedProxies
    relations: RelationStore | None = None
    # cluster mode: the session ``code`` on another node (a relay handle), or None
    locate: Callable[[str], Awaitable[SessionHandle | None]] | None = None

    @classmethod
    def build(
        cls,
        config: Config,
        supervisor: Supervisor,
        counters: Counters,
        env: Environment,
        directory: UserDirectory,
        relations: RelationStore | None = None,
        locate: Callable[[str], Awaitable[SessionHandle | None]] | None = None,
    ) -> Gateway:
        """A gateway with the identity checks and abuse limits ``config`` sets."""
        return cls(
            config=config,
            supervisor=supervisor,
            counters=counters,
            env=env,
            directory=directory,
            auth=Authenticator(config),
            guard=AbuseGuard(config),
            proxies=TrustedProxies.parse(config.trusted_proxy),
            relations=relations,
            locate=locate,
        )


def exposure(config: Config) -> tuple[bool, str]:
    """Whether the server may start with ``config``, and what to say about its authentication.

    With a key configured, it authenticates. Without one it runs unauthenticated, which is the
    development mode on a loopback address; on any other address it refuses to start unless
    ``insecure`` is set (and then says so loudly).
    """
    if config.auth_enabled:
        return True, "hello tokens are verified (JWT)"
    if is_loopback(config.host):
        return True, (
            "running UNAUTHENTICATED (development mode, loopback only): hello tokens are not "
            "verified and anyone may host; configure --jwt-secret or --jwt-public-key"
        )
    if config.insecure:
        return True, (
            f"INSECURE: serving {config.host} with NO AUTHENTICATION (--insecure): anyone who "
            "can reach this port can connect as anyone and host sessions"
        )
    return False, (
        f"refusing to serve {config.host} without authentication: configure --jwt-secret or "
        "--jwt-public-key, or pass --insecure to run unauthenticated anyway"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, or "" (every interface)
        return False
