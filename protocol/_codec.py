"""JSON <-> typed messages: the one private cattrs converter and the frame encoders.

Decoding never raises: a frame becomes ``(ref, request)`` or ``(ref, ProtocolError)``, so a bad
frame is answered and the connection goes on.
"""

from __future__ import annotations

from typing import Any, Final

import cattrs
import orjson
from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.preconf.orjson import make_converter
from cattrs.v import format_exception

from ._errors import ErrorCode, ProtocolError
from ._events import (
    EVENT_TYPES,
    Event,
    ParticipantView,
    RoomCreated,
    RoomMessageEvent,
    RoomView,
    Snapshot,
    StateUpdated,
)
from ._notices import NOTICE_TYPES, GuardianLiveStarted, Notice
from ._replies import REPLY_TYPES, HelloReply, LiveReply, Reply, ResumeReply, RoomReply, SeatReply
from ._requests import REQUEST_TYPES, Request

Ref = str | int | None
MAX_REF_LENGTH: Final = 128  # characters
MAX_DEPTH: Final = 32  # nesting levels of any JSON value in a request (orjson writes <= 254)

converter: Final = make_converter(forbid_extra_keys=True)


def _strict(kind: type) -> Any:
    # cattrs would coerce "5" to 5 and 5 to "5"; a protocol should say the field is wrong instead.
    def structure(value: Any, _type: Any) -> Any:
        if type(value) is kind or (kind is float and type(value) is int):
            return value
        raise TypeError(f"expected {kind.__name__}")

    return structure


for _kind in (str, int, float, bool):
    converter.register_structure_hook(_kind, _strict(_kind))
converter.register_unstructure_hook(
    RoomMessageEvent,
    make_dict_unstructure_fn(RoomMessageEvent, converter, sender=override(rename="from")),
)
converter.register_unstructure_hook(
    StateUpdated,
    make_dict_unstructure_fn(StateUpdated, converter, _cattrs_omit_if_default=True),
)


def _omit_none(cls: type, *names: str) -> None:
    """Leave the optional fields ``names`` out of ``cls``'s frames while they are ``None``."""
    overrides: dict[str, Any] = {name: override(omit_if_default=True) for name in names}
    converter.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, converter, **overrides))


for _cls in (ParticipantView, RoomView, RoomReply, Snapshot, RoomCreated):
    _omit_none(_cls, "meta")
for _seat in (SeatReply, LiveReply, GuardianLiveStarted):
    _omit_none(_seat, "meta", "reused")
_omit_none(ResumeReply, "host_id", "participants", "rooms", "started_at", "meta", "kind")
_omit_none(HelloReply, "expires_at")


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests objects or arrays more than ``limit`` levels deep.

    Iterative, so a hostile value cannot exhaust the stack; stops at the first level too deep.
    """
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _bad_request(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message)


def decode_request(frame: str | bytes) -> tuple[Ref, Request | ProtocolError]:
    """Parse one text frame into ``(ref, request)``, or ``(ref, error)`` saying what is wrong."""
    try:
        payload = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        return None, _bad_request(f"malformed JSON: {exc}")
    if not isinstance(payload, dict):
        return None, _bad_request("a frame must be a JSON object")
    ref = payload.pop("ref", None)
    if ref is not None and not (
        (type(ref) is str and len(ref) <= MAX_REF_LENGTH) or type(ref) is int
    ):
        return None, _bad_request(f"ref: must be an integer or a string of <= {MAX_REF_LENGTH}")
    kind = payload.pop("type", None)
    if type(kind) is not str:
        return ref, _bad_request("type: required, must be a string")
    cls = REQUEST_TYPES.get(kind)
    if cls is None:
        return ref, ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown type {kind!r}")
    for name, value in payload.items():
        if isinstance(value, dict | list) and too_deep(value):
            return ref, _bad_request(f"{name}: nested deeper than {MAX_DEPTH} levels")
    try:
        return ref, converter.structure(payload, cls)
    except cattrs.ClassValidationError as exc:
        return ref, _bad_request("; ".join(cattrs.transform_error(exc, format_exception=_describe)))


def _describe(exc: BaseException, type_: Any) -> str:
    # attrs validators raise ValueError with a message that already names the rule
    if isinstance(exc, ValueError) and exc.args:
        return str(exc)
    return format_exception(exc, type_)


def encode(message: dict[str, Any]) -> str:
    """Encode a JSON object as the text of one frame."""
    return orjson.dumps(message).decode()


def encode_reply(ref: Ref, data: Reply) -> str:
    """A successful reply."""
    return encode({"type": "reply", "ref": ref, "ok": True, "data": converter.unstructure(data)})


def decode_reply(kind: str, data: dict[str, Any]) -> Reply:
    """The typed ``data`` of a successful reply to a ``kind`` request.

    Read leniently (fields this side does not know are ignored), as events are.
    Raises ``KeyError`` for an unknown ``kind`` and a cattrs error for a malformed ``data``.
    """
    return _lenient.structure(data, REPLY_TYPES[kind])


def encode_error(ref: Ref, error: ProtocolError) -> str:
    """A failed reply."""
    body = {"code": error.code.value, "message": error.message, **error.extra}
    return encode({"type": "reply", "ref": ref, "ok": False, "error": body})


def encode_event(event: Event | Notice) -> str:
    """An event (or a connection notice), with ``type`` first.

    Raises ``orjson.JSONEncodeError`` if a value cannot be encoded (decode_request refuses what
    could cause that, so this means a bug).
    """
    return encode({"type": event.TYPE, **converter.unstructure(event)})


def decode_event(message: dict[str, Any]) -> Event | Notice | None:
    """Turn a received event or notice into its typed form; ``None`` for a type this side lacks.

    Unknown fields are ignored so that older clients keep working when events grow.
    """
    kind = message.get("type", "")
    cls: type[Event | Notice] | None = EVENT_TYPES.get(kind) or NOTICE_TYPES.get(kind)
    if cls is None:
        return None
    fields = {k: v for k, v in message.items() if k != "type"}
    return _lenient.structure(fields, cls)


def unstructure(value: Any) -> Any:
    """Plain JSON-able form of an attrs value (views, snapshots)."""
    return converter.unstructure(value)


# Events are read leniently (extra fields allowed); requests strictly.
_lenient: Final = make_converter()
_lenient.register_structure_hook(
    RoomMessageEvent,
    cattrs.gen.make_dict_structure_fn(RoomMessageEvent, _lenient, sender=override(rename="from")),
)
