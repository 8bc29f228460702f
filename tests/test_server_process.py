"""``python server.py`` driven by a client that is not trio-websocket (the ``websockets`` library)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from server import parse_args

from .conftest import TCP_GUARD, running_server

ROOT = Path(__file__).resolve().parent.parent


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.refs = 0

    def request(self, kind: str, /, **fields: object) -> dict:
        self.refs += 1
        self.ws.send(json.dumps({"type": kind, "ref": self.refs, **fields}))
        reply = self.next()
        assert reply["type"] == "reply" and reply["ref"] == self.refs, reply
        return reply

    def ok(self, kind: str, /, **fields: object) -> dict:
        reply = self.request(kind, **fields)
        assert reply["ok"] is True, reply
        return reply["data"]

    def next(self) -> dict:
        return json.loads(self.ws.recv(timeout=10))


def test_classroom_flow_with_another_client_library(server_url: str) -> None:
    with connect(server_url, compression=None) as h, connect(server_url, compression=None) as s:
        teacher, student = Client(h), Client(s)
        assert teacher.ok("hello", name="Teacher")["heartbeat_interval"] == 25.0
        student.ok("hello", name="Student")
        code = teacher.ok("session:create")["code"]
        joined = student.ok("session:join", code=code)
        assert teacher.next()["type"] == "session:participantJoined"
        teacher.ok("session:createRoom", room="poll", kind="poll")
        assert teacher.next()["type"] == "session:roomCreated"
        assert student.next()["room"] == "poll"
        student.ok("room:message", room="poll", data={"answer": "B"})
        message = teacher.next()
        assert message["type"] == "room:message" and message["from"] == joined["participant_id"]
        teacher.ok("state:set", state={"question": 1})
        assert teacher.next()["type"] == "state:updated"
        assert student.next()["state"] == {"question": 1}
        assert student.request("session:close")["error"]["code"] == "forbidden"
        teacher.ok("session:closeRoom", room="poll")
        teacher_events = [teacher.next()]
        teacher.ok("session:close")
        teacher_events.append(teacher.next())
        student_events = [student.next(), student.next()]
        for events in (teacher_events, student_events):
            assert [e["type"] for e in events] == ["session:roomClosed", "session:closed"]
            assert events[1]["reason"] == "manual_stop"
            assert [e["seq"] for e in events] == [5, 6]
        assert teacher.request("nope")["error"]["code"] == "unknown_type"
        h.send("{not json")
        assert teacher.next()["error"]["code"] == "bad_request"


def test_other_paths_are_not_found(server_url: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(server_url.replace("/ws", "/nope"))
    assert info.value.response.status_code == 404


def test_off_loopback_without_a_key_the_server_refuses_to_start() -> None:
    """Secure by default: no key and a public address is exit 2, naming the fix."""
    refused = subprocess.run(
        [sys.executable, "server.py", "--host", "0.0.0.0", "--port", "0", "--store", "memory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TCP_GUARD,
        check=False,
    )
    assert refused.returncode == 2
    assert "refusing to serve 0.0.0.0 without authentication" in refused.stderr
    assert "--insecure" in refused.stderr


def test_insecure_is_a_bare_flag_and_says_so_loudly() -> None:
    with running_server("--host", "0.0.0.0", "--insecure") as server:
        server.expect(r"WARNING .*INSECURE: serving 0\.0\.0\.0 with NO AUTHENTICATION")


def test_boolean_flags_alone_mean_true() -> None:
    config, _ = parse_args(["--allow-anonymous", "--metrics", "false", "--port", "9"], env={})
    assert (config.allow_anonymous, config.metrics, config.insecure, config.port) == (
        True,
        False,
        False,
        9,
    )
