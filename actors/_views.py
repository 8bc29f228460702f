"""A session's records as the clients see them (protocol views)."""

from __future__ import annotations

from typing import Any

from protocol import ParticipantView, RoomView

from ._state import Participant, Room


def participant_view(p: Participant) -> ParticipantView:
    """A participant as others see it."""
    return ParticipantView(id=p.id, name=p.name, role=p.role, presence=p.presence, meta=p.meta)


def room_view(room: Room) -> RoomView:
    """A room as the clients see it."""
    return RoomView(name=room.name, kind=room.kind, members=list(room.members), meta=room.meta)


def room_fields(view: RoomView) -> dict[str, Any]:
    """A room view's fields, for replies that extend it."""
    return {"name": view.name, "kind": view.kind, "members": view.members, "meta": view.meta}
