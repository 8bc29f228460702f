"""Logs: the JSON format (one object per line, structured fields), and the stats line."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

import httpx
import pytest
import trio
from websockets.sync.client import connect

from admin import JsonFormatter

from .conftest import TCP_GUARD, running_server, start_memory

STATS = re.compile(
    r"^stats: (\d+) active, (\d+) hibernating, (\d+) connections, (\d+) participants, "
    r"(\d+\.\d) msg/s in, (\d+\.\d) msg/s out$"
)


def record(message: str, *args: object, **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("actors._session")
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, message, args, None, extra=extra
    )


def test_a_json_line_has_the_standard_and_the_structured_fields() -> None:
    fields = {"session": "K7Q2M", "participant": "p_1", "connection": "c_9", "user": "u_2"}
    line = JsonFormatter().format(
        record("session %s: %d seats", "K7Q2M", 3, client="1.2.3.4", **fields)
    )
    entry = json.loads(line)
    ts = entry.pop("ts")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", ts)
    assert entry == {
        "level": "warning",
        "logger": "actors._session",
        "message": "session K7Q2M: 3 seats",
        "client": "1.2.3.4",
        **fields,
    }
    assert "\n" not in line


def test_a_json_line_carries_the_traceback_and_survives_odd_values() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    entry_record = record("failed", session=object())
    entry_record.exc_info = exc_info
    entry = json.loads(JsonFormatter().format(entry_record))
    assert entry["exc"].startswith("Traceback") and "ValueError: boom" in entry["exc"]
    assert entry["session"].startswith("<object object")


async def test_the_stats_line_counts_sessions_connections_and_messages(
    nursery: trio.Nursery, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="admin._logs")
    harness = await start_memory(nursery, stats_interval=60.0)
    host, (participant,), _ = await harness.session(participants=1)
    await host.ok("session:createRoom", room="r", kind="chat")
    lost_host, (watcher,), _ = await harness.session(participants=1)
    await lost_host.drop()
    await watcher.event("session:hibernating")
    received = harness.server.counters.frames_received
    await trio.sleep(61.0)  # past the first stats line, due 60 s after the start (a tie would race)
    [stats] = [r for r in caplog.records if r.getMessage().startswith("stats:")]
    figures = STATS.fullmatch(stats.getMessage())
    assert figures is not None, stats.getMessage()
    assert figures.groups()[:4] == ("1", "1", "3", "4")
    assert float(figures[5]) == pytest.approx(received / 60.0, abs=0.1)
    assert float(figures[6]) > 0
    assert (stats.active, stats.hibernating, stats.connections, stats.participants) == (1, 1, 3, 4)  # type: ignore[attr-defined]
    assert participant.events == []


def test_the_server_logs_json_lines_with_the_session_and_stats() -> None:
    token = "logs-token"
    flags = ("--log-format", "json", "--stats-interval", "0.2", "--admin-token", token)
    with running_server(*flags) as server:
        with connect(server.url, compression=None) as host:
            host.send(json.dumps({"type": "hello", "ref": 1}))
            assert json.loads(host.recv(timeout=TCP_GUARD))["ok"]
            host.send(json.dumps({"type": "session:create", "ref": 2}))
            code = json.loads(host.recv(timeout=TCP_GUARD))["data"]["code"]
            headers = {"authorization": f"Bearer {token}"}
            response = httpx.delete(
                f"{server.admin_url}/api/v1/sessions/{code}", headers=headers, timeout=TCP_GUARD
            )
            assert response.status_code == 200
        server.expect(rf"session {code}: closed by an operator")
        stats = server.expect(r'"message":"stats: ')
    lines = [json.loads(line) for line in server.lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(entry) for entry in lines)
    [closed] = [e for e in lines if e["message"] == f"session {code}: closed by an operator"]
    assert closed["session"] == code and closed["level"] == "info"
    entry = json.loads(stats.string)
    assert {"active", "hibernating", "connections", "participants"} <= set(entry)
    assert {"msg_in_per_s", "msg_out_per_s"} <= set(entry)
    assert any(e["message"].startswith("admin API on http://127.0.0.1:") for e in lines)
