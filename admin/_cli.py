"""``trio-sessions admin ...``: the admin API from a shell, over HTTP (standard library only).

::

    trio-sessions admin ls [--status active|hibernating] [--host USER]
    trio-sessions admin show CODE
    trio-sessions admin close CODE
    trio-sessions admin cleanup --hours H
    trio-sessions admin reset --yes

``--url`` (env ``TRIO_SESSIONS_ADMIN_URL``, default ``http://127.0.0.1:8766``), ``--token``
(env ``TRIO_SESSIONS_ADMIN_TOKEN``), ``--json`` (print the API's JSON instead of a table).
Exit status: 0 done, 1 the API refused (its error is printed), 2 a usage error or no server.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Final

import orjson

DEFAULT_URL: Final = "http://127.0.0.1:8766"
HTTP_TIMEOUT: Final = 60.0  # seconds for one request (a cleanup waits for sessions to end)
PAGE: Final = 1000  # sessions per request when listing


class CliError(Exception):
    """Something to print before exiting: the API's refusal (status 1) or no answer (2)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """The admin API at ``url``, with ``token`` as the bearer token when given."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The decoded JSON answer. Raises :class:`CliError` for an error answer or none."""
        headers = {"accept": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            headers["content-type"] = "application/json"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            raise CliError(_error_text(error), 1) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(f"cannot reach the admin API at {self.url}: {reason}", 2) from None


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        detail = orjson.loads(error.read())["error"]
        return f"{detail['code']}: {detail['message']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"HTTP {error.code}"


# ---------------------------------------------------------------- commands


def _ls(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    query = {k: v for k, v in {"status": args.status, "host": args.host}.items() if v}
    sessions: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:  # every page
        params = {**query, "limit": PAGE, **({"cursor": cursor} if cursor else {})}
        page = client.call("GET", "/api/v1/sessions?" + urllib.parse.urlencode(params))
        sessions += page["sessions"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    rows = [
        [
            s["code"],
            s["status"],
            s["kind"],
            s["host_user_id"],
            str(s["active_clients"]),
            str(s["participants"]),
            ",".join(s["rooms"]) or "-",
            s["last_activity"],
        ]
        for s in sessions
    ]
    header = ["CODE", "STATUS", "KIND", "HOST", "CLIENTS", "SEATS", "ROOMS", "LAST ACTIVITY"]
    text = table(header, rows) if rows else "no live sessions"
    return {"sessions": sessions}, text


def _show(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    code = urllib.parse.quote(args.code, safe="")
    session = client.call("GET", f"/api/v1/sessions/{code}")
    lines = [
        f"{key}: {_plain(value)}"
        for key, value in session.items()
        if key not in ("seats", "user_ids")
    ]
    if session.get("seats"):
        seats = [
            [s["participant_id"], s["user_id"], s["name"], s["role"], s["presence"], s["last_seen"]]
            for s in session["seats"]
        ]
        header = ["SEAT", "USER", "NAME", "ROLE", "PRESENCE", "LAST SEEN"]
        lines += ["", table(header, seats)]
    return session, "\n".join(lines)


def _close(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    code = urllib.parse.quote(args.code, safe="")
    closed = client.call("DELETE", f"/api/v1/sessions/{code}")
    return closed, f"closed {closed['code']} (reason {closed['reason']})"


def _cleanup(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    result = client.call("POST", "/api/v1/sessions/cleanup", {"max_inactive_hours": args.hours})
    removed = result["removed_sessions"]
    text = f"closed {result['count']} idle sessions" + (f": {' '.join(removed)}" if removed else "")
    return result, text


def _reset(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    if not args.yes:
        raise CliError("reset closes every session: add --yes to confirm", 2)
    result = client.call("POST", "/api/v1/sessions/reset", {"confirm": True})
    return result, f"closed {result['count']} sessions"


COMMANDS: Final[dict[str, Callable[[Client, argparse.Namespace], tuple[Any, str]]]] = {
    "ls": _ls,
    "show": _show,
    "close": _close,
    "cleanup": _cleanup,
    "reset": _reset,
    # ---- further commands (e.g. relations): add the function here and its parser below.
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given after the command, an option must not reset one given before it.
    common.add_argument("--url", default=argparse.SUPPRESS, help="admin API base URL")
    common.add_argument("--token", default=argparse.SUPPRESS, help="admin bearer token")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="trio-sessions admin",
        description="Inspect and manage a running trio-sessions server through its admin API.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = commands.add_parser("ls", parents=[common], help="list live sessions")
    ls.add_argument("--status", choices=["active", "hibernating"])
    ls.add_argument("--host", help="only sessions this user id hosts")
    show = commands.add_parser("show", parents=[common], help="one session, live or closed")
    show.add_argument("code")
    close = commands.add_parser("close", parents=[common], help="close a session (reason admin)")
    close.add_argument("code")
    cleanup = commands.add_parser(
        "cleanup", parents=[common], help="close sessions nobody used for H hours"
    )
    cleanup.add_argument("--hours", type=float, required=True)
    reset = commands.add_parser("reset", parents=[common], help="close every session")
    reset.add_argument("--yes", action="store_true", help="confirm")
    # ---- further commands (e.g. relations): add their subparsers here.
    return parser


def cli_main(argv: Sequence[str]) -> int:
    """Run one admin command (``argv`` after ``admin``); returns the exit status.

    Usage errors exit through ``SystemExit`` (status 2), as argparse does.
    """
    args = _parser().parse_args(argv)
    url = getattr(args, "url", None) or os.environ.get("TRIO_SESSIONS_ADMIN_URL", DEFAULT_URL)
    token = getattr(args, "token", None) or os.environ.get("TRIO_SESSIONS_ADMIN_TOKEN", "")
    try:
        answer, text = COMMANDS[args.command](Client(url, token), args)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.status
    if getattr(args, "json", False):
        print(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
    else:
        print(text)
    return 0


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _plain(value: object) -> str:
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return "-" if value is None else str(value)
