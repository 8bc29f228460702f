"""The wire codec: decoding never raises, and every failure names what is wrong."""

from __future__ import annotations

import re

import attrs
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    ErrorCode,
    ProtocolError,
    RoomMessage,
    RoomMessageEvent,
    SessionJoin,
    StatePatch,
    decode_event,
    decode_request,
    encode_event,
    merge_patch,
)


def error_of(frame: str) -> tuple[object, ProtocolError]:
    ref, result = decode_request(frame)
    assert isinstance(result, ProtocolError), result
    return ref, result


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ("{", ErrorCode.BAD_REQUEST, r"^malformed JSON: "),
        ("[1, 2]", ErrorCode.BAD_REQUEST, r"^a frame must be a JSON object$"),
        ('{"ref": 1}', ErrorCode.BAD_REQUEST, r"^type: required, must be a string$"),
        ('{"type": 5}', ErrorCode.BAD_REQUEST, r"^type: required, must be a string$"),
        ('{"type": "nope"}', ErrorCode.UNKNOWN_TYPE, r"^unknown type 'nope'$"),
        ('{"type": "session:join"}', ErrorCode.BAD_REQUEST, r"required field missing @ \$\.code"),
        ('{"type": "session:join", "code": 7}', ErrorCode.BAD_REQUEST, r"expected str @ \$\.code"),
        (
            '{"type": "session:join", "code": "A", "x": 1}',
            ErrorCode.BAD_REQUEST,
            r"extra fields found \(x\)",
        ),
        (
            '{"type": "session:createRoom", "room": ""}',
            ErrorCode.BAD_REQUEST,
            r"^room: must be 1-64",
        ),
        (
            '{"type": "state:patch", "patch": [1]}',
            ErrorCode.BAD_REQUEST,
            r"expected a mapping @ \$\.patch",
        ),
        (
            '{"type": "state:set", "state": {}, "expected_version": true}',
            ErrorCode.BAD_REQUEST,
            r"\$\.expected_version",
        ),
        (
            '{"type": "session:resume", "token": "t", "last_seq": -1}',
            ErrorCode.BAD_REQUEST,
            r"^last_seq: must be >= 0",
        ),
        ('{"type": "ping", "ref": [1]}', ErrorCode.BAD_REQUEST, r"^ref: must be"),
    ],
)
def test_bad_frames_name_the_problem(frame: str, code: ErrorCode, message: str) -> None:
    """Every malformed frame becomes an error with a code and a message naming the field."""
    _ref, error = error_of(frame)
    assert error.code is code

    assert re.search(message, error.message), error.message


def test_ref_is_kept_when_the_rest_is_bad() -> None:
    """A reply can be correlated even when the request is wrong."""
    ref, error = error_of('{"type": "session:join", "ref": "abc"}')
    assert ref == "abc"
    assert error.code is ErrorCode.BAD_REQUEST


def test_good_requests_are_typed() -> None:
    assert decode_request('{"type": "session:join", "ref": 3, "code": "ABCDE"}') == (
        3,
        SessionJoin(code="ABCDE"),
    )
    assert decode_request('{"type": "room:message", "room": "r", "data": [1, {"a": null}]}') == (
        None,
        RoomMessage(room="r", data=[1, {"a": None}]),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(room=st.text(min_size=1, max_size=64), data=json_values)
def test_room_message_round_trip(room: str, data: object) -> None:
    """Whatever JSON a client sends as ``data`` reaches the others unchanged."""
    frame = orjson.dumps({"type": "room:message", "room": room, "data": data}).decode()
    _ref, request = decode_request(frame)
    assert request == RoomMessage(room=room, data=data)
    event = RoomMessageEvent(session="ABCDE", seq=1, at="t", room=room, sender="p_1", data=data)
    wire = orjson.loads(encode_event(event))
    assert wire["from"] == "p_1" and "sender" not in wire
    assert decode_event(wire) == event


@given(patch=st.dictionaries(st.text(max_size=5), json_values, max_size=5))
def test_state_patch_accepts_any_object(patch: dict) -> None:
    assert decode_request(orjson.dumps({"type": "state:patch", "patch": patch}))[1] == StatePatch(
        patch=patch
    )


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # the examples of RFC 7386, appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386(target: object, patch: object, result: object) -> None:
    before = orjson.dumps(target)
    assert merge_patch(target, patch) == result
    assert orjson.dumps(target) == before  # the target is never modified


@given(
    depth=st.integers(min_value=1, max_value=1000),
    kind=st.sampled_from(["room:message", "state:set", "state:patch", "session:create"]),
    wrap=st.sampled_from(["[", '{"k":']),
)
def test_any_nesting_decodes_to_something_the_server_can_encode(
    depth: int, kind: str, wrap: str
) -> None:
    """Fuzz: whatever the nesting, a request is either refused naming its field or can be
    re-encoded (orjson writes at most 254 levels; a crash there used to end the session)."""
    close = "]" if wrap == "[" else "}"
    value = wrap * depth + "1" + close * depth
    field = {"room:message": "data", "state:set": "state", "state:patch": "patch"}.get(
        kind, "state"
    )
    body = value if field == "data" else '{"v": ' + value + "}"
    extra = ', "room": "r"' if kind == "room:message" else ""
    _ref, request = decode_request(f'{{"type": "{kind}", "{field}": {body}{extra}}}')
    if isinstance(request, ProtocolError):
        assert request.code is ErrorCode.BAD_REQUEST
        assert request.message in (
            f"{field}: nested deeper than 32 levels",
            f"malformed JSON: {request.message.removeprefix('malformed JSON: ')}",
        )
    else:
        orjson.dumps(attrs.asdict(request))  # never raises
