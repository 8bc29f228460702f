"""``trio-sessions admin ...`` against a running ``server.py``: tables, ``--json``, exit status."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from admin import cli_main

from .conftest import ROOT, TCP_GUARD, ServerProcess, running_server

TOKEN = "cli-token"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with running_server("--admin-token", TOKEN) as running:
        yield running


def request(ws: ClientConnection, kind: str, **fields: Any) -> dict[str, Any]:
    ws.send(json.dumps({"type": kind, "ref": kind, **fields}))
    while (frame := json.loads(ws.recv(timeout=TCP_GUARD)))["type"] != "reply":
        pass
    assert frame["ok"], frame
    return dict(frame["data"])


@contextlib.contextmanager
def host_session(server: ServerProcess) -> Iterator[tuple[ClientConnection, str]]:
    """A connected host and the code of its new session."""
    with connect(server.url, compression=None) as ws:
        request(ws, "hello", name="Teacher")
        yield ws, request(ws, "session:create")["code"]


def admin(server: ServerProcess, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run ``admin ARGV`` against ``server``; its exit status and output (stdout + stderr)."""
    status = cli_main([*argv, "--url", server.admin_url, "--token", TOKEN])
    out = capsys.readouterr()
    return status, out.out + out.err


def test_ls_show_close(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    with host_session(server) as (ws, code):
        status, out = admin(server, capsys, "ls")
        assert status == 0
        header, *rows = out.splitlines()
        assert header.split() == [
            "CODE", "STATUS", "KIND", "HOST", "CLIENTS", "SEATS", "ROOMS", "LAST", "ACTIVITY"
        ]  # fmt: skip
        [row] = [r.split() for r in rows if r.startswith(code)]
        assert row[1:3] == ["active", "session"] and row[4:7] == ["1", "1", "-"]

        status, out = admin(server, capsys, "ls", "--json")
        assert status == 0 and [s["code"] for s in json.loads(out)["sessions"]] == [code]

        status, out = admin(server, capsys, "show", code)
        assert status == 0
        assert f"code: {code}" in out and "status: active" in out and "state_version: 0" in out
        assert "Teacher" in out and "host" in out and "online" in out

        status, out = admin(server, capsys, "close", code)
        assert (status, out) == (0, f"closed {code} (reason admin)\n")
        closed = json.loads(ws.recv(timeout=TCP_GUARD))
        assert closed["type"] == "session:closed" and closed["reason"] == "admin"

    status, out = admin(server, capsys, "show", code)  # the memory store keeps no history
    assert (status, out) == (1, f"error: not_found: no session {code}\n")


def test_cleanup_and_reset(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    with host_session(server) as (_, idle):
        pass
    server.expect(rf"session {idle}: host dropped, hibernating")
    with host_session(server) as (ws, _):
        assert admin(server, capsys, "cleanup", "--hours", "1") == (0, "closed 0 idle sessions\n")
        assert admin(server, capsys, "cleanup", "--hours", "0") == (
            0,
            f"closed 1 idle sessions: {idle}\n",
        )
        status, out = admin(server, capsys, "reset")
        assert status == 2 and "add --yes" in out
        assert admin(server, capsys, "reset", "--yes") == (0, "closed 1 sessions\n")
        closed = json.loads(ws.recv(timeout=TCP_GUARD))
        assert closed["type"] == "session:closed" and closed["reason"] == "admin_reset"
    assert admin(server, capsys, "ls") == (0, "no live sessions\n")


def test_errors_and_the_environment(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli_main(["ls", "--url", server.admin_url, "--token", "wrong"]) == 1
    assert "error: unauthorized: a valid bearer token is required" in capsys.readouterr().err
    assert cli_main(["ls", "--url", "http://127.0.0.1:1", "--token", TOKEN]) == 2
    assert "cannot reach the admin API at http://127.0.0.1:1" in capsys.readouterr().err
    monkeypatch.setenv("TRIO_SESSIONS_ADMIN_URL", server.admin_url)
    monkeypatch.setenv("TRIO_SESSIONS_ADMIN_TOKEN", TOKEN)
    assert cli_main(["--json", "ls"]) == 0
    assert json.loads(capsys.readouterr().out) == {"sessions": []}
    with pytest.raises(SystemExit) as usage:
        cli_main(["cleanup"])  # --hours is required
    assert usage.value.code == 2


def test_server_py_admin_runs_the_cli(server: ServerProcess) -> None:
    command = [sys.executable, "server.py", "admin", "ls", "--url", server.admin_url]
    done = subprocess.run(
        [*command, "--token", TOKEN], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout) == (0, "no live sessions\n")
