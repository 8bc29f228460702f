"""Logging: text or JSON lines on stderr, and the periodic stats line.

A log call passes its structured fields through ``extra=``; the JSON format writes them beside
the standard ones::

    logger.info("session %s: closed by an operator", code, extra={"session": code})
    -> {"ts": "...", "level": "info", "logger": "admin._routes",
        "message": "session K7Q2M: closed by an operator", "session": "K7Q2M"}

The fields the server uses are listed in :data:`FIELDS` (documented in docs/operations.md); any
other ``extra`` key is written too.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import IO, TYPE_CHECKING, Any, Final, NoReturn

import orjson
import trio

if TYPE_CHECKING:
    from actors import Supervisor
    from gateway import Counters

logger = logging.getLogger(__name__)

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS: Final = ("session", "participant", "connection", "user", "client")
# Every attribute a LogRecord has without ``extra``: the rest are structured fields.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    then the record's ``extra`` fields, and ``exc`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, log_format: str, stream: IO[str] = sys.stderr) -> None:
    """Send every log record at ``level`` or above to ``stream`` as ``text`` or ``json`` lines.

    Configures the root logger once per process (``logging.basicConfig``): a process that
    already has handlers (a test runner) keeps them.
    """
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])


async def log_stats(supervisor: Supervisor, counters: Counters, interval: float) -> NoReturn:
    """Every ``interval`` seconds, one info record with the server's figures, e.g.
    ``stats: 3 active, 1 hibernating, 8 connections, 12 participants, 40.0 msg/s in,
    310.5 msg/s out``, the same figures as the structured fields ``active``, ``hibernating``,
    ``connections``, ``participants``, ``msg_in_per_s``, ``msg_out_per_s``.

    Messages in and out are frames from and to clients, per second over the interval.
    Never returns unless cancelled.
    """
    since, received, sent = trio.current_time(), counters.frames_received, counters.frames_sent
    while True:
        await trio.sleep(interval)
        now = trio.current_time()
        elapsed = max(now - since, 1e-9)
        stats = supervisor.statistics()
        active = sum(1 for s in stats.sessions if s.status == "active")
        fields = {
            "active": active,
            "hibernating": stats.live - active,
            "connections": counters.open,
            "participants": stats.seated,
            "msg_in_per_s": round((counters.frames_received - received) / elapsed, 1),
            "msg_out_per_s": round((counters.frames_sent - sent) / elapsed, 1),
        }
        logger.info(
            "stats: %(active)d active, %(hibernating)d hibernating, %(connections)d connections,"
            " %(participants)d participants, %(msg_in_per_s).1f msg/s in,"
            " %(msg_out_per_s).1f msg/s out",
            fields,
            extra=fields,
        )
        since, received, sent = now, counters.frames_received, counters.frames_sent
