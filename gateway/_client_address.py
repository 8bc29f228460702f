"""The client's address behind trusted reverse proxies (``X-Forwarded-For``).

Each proxy appends the address of whoever connected to it, so the header reads
``client, proxy1, proxy2`` and only its right end was written by proxies we trust: everything
left of the first untrusted hop may have been made up by the client. Hence the client is the
right-most entry that is not itself a trusted proxy, and a header from a peer we do not trust is
ignored altogether.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

import attrs

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_PORT: Final = re.compile(r":[0-9]{1,5}")


@attrs.frozen
class TrustedProxies:
    """The reverse proxies whose ``X-Forwarded-For`` is believed (``--trusted-proxy``)."""

    networks: tuple[_Network, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> TrustedProxies:
        """Comma-separated IP addresses or CIDR networks; an empty spec trusts nobody.

        Host bits of a network are ignored (``10.1.2.3/8`` is ``10.0.0.0/8``).

        Raises:
            ValueError: an entry is neither an address nor a network; the message names it.
        """
        networks: list[_Network] = []
        for entry in spec.split(","):
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted_proxy: {entry!r} is not an IP address or network"
                ) from None
        return cls(tuple(networks))

    def client_address(self, peer_host: str, forwarded_for: str | None) -> str:
        """The address to hold a connection's client to (limits, logs).

        ``peer_host`` is the TCP peer; ``forwarded_for`` the ``X-Forwarded-For`` header (its
        occurrences joined with commas), or ``None``. Unless the peer is trusted the header is
        ignored and the peer is the client. Otherwise the header is read from the right,
        skipping trusted proxies; the first other address is the client. An entry that is not
        an address (``unknown``, garbage, an obfuscated name) ends the walk: the client is then
        the nearest trusted hop, never an address from further left, which the client may have
        written. If every entry is trusted, the client is the left-most. Entries may carry a
        port (``1.2.3.4:5678``, ``[2001:db8::1]:443``). An address is returned without its port,
        in canonical form (an IPv4-mapped IPv6 address as IPv4); a peer that is not an IP
        address is returned as it is.
        """
        peer = _parse_address(peer_host)
        if peer is None:
            return peer_host  # not an IP address (an in-memory listener's peer name)
        if forwarded_for is None or not self._trusts(peer):
            return str(peer)
        client = str(peer)
        for entry in reversed(forwarded_for.split(",")):
            address = _parse_address(entry.strip())
            if address is None:
                break
            client = str(address)
            if not self._trusts(address):
                break
        return client

    def _trusts(self, address: _Address) -> bool:
        return any(address in network for network in self.networks)


def _parse_address(text: str) -> _Address | None:
    """An address, with an optional port (``[v6]:port``, ``v4:port``); ``None`` if malformed."""
    if text.startswith("["):
        text, bracket, port = text[1:].partition("]")
        if not bracket or (port and not _PORT.fullmatch(port)):
            return None
    elif text.count(":") == 1:  # IPv4 with a port (an IPv6 address has at least two colons)
        text, port = text.split(":")
        if not _PORT.fullmatch(":" + port):
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
