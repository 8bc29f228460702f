"""Which connections each user has open: the user-addressed path (server -> every connection of
user X), used by live sessions and open to operators (``user:notice``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from protocol import UserNotice, encode_event

if TYPE_CHECKING:
    from actors import Peer


class UserDirectory:
    """User id -> that user's open connections, the newest last. Implements
    :class:`actors.Directory`. A connection is listed from its hello to its end, so the
    directory holds at most as many entries as there are open connections."""

    __slots__ = ("_peers",)

    def __init__(self) -> None:
        self._peers: dict[str, list[Peer]] = {}

    def __len__(self) -> int:
        """Users with at least one open connection."""
        return len(self._peers)

    def add(self, peer: Peer) -> None:
        """``peer`` said hello as ``peer.user_id``."""
        self._peers.setdefault(peer.user_id, []).append(peer)

    def remove(self, peer: Peer) -> None:
        """``peer``'s connection ended."""
        peers = self._peers.get(peer.user_id)
        if peers is not None and peer in peers:
            peers.remove(peer)
            if not peers:
                del self._peers[peer.user_id]

    def peers_of(self, user_id: str) -> Sequence[Peer]:
        return self._peers.get(user_id, ())

    def notify(self, user_id: str, topic: str, data: Any, at: str) -> int:
        """Send a ``user:notice`` to every connection of ``user_id``; how many took it."""
        frame = encode_event(UserNotice(topic=topic, data=data, at=at))
        return sum(peer.deliver(frame) for peer in self.peers_of(user_id))
