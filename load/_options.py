"""The load plan: what every load process is told to do, and the command line that makes it."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Final

import attrs

from ._link import split_url
from ._swarm import Rates

MAX_CLIENTS: Final = 100_000
MAX_DURATION: Final = 24 * 3600.0
ADMIN_PORT: Final = 8766  # the server's default admin port, where /metrics is


@attrs.frozen
class Plan:
    """One load run, as every process receives it."""

    url: str
    sessions: int
    participants: int  # per session, host included
    rooms: int
    rates: Rates
    ramp_up: float  # clients per second over all processes; 0 = at once
    duration: float
    drain: float
    message_size: int
    processes: int
    seed: int
    metrics_url: str  # the server's /metrics, scraped before and after the run

    def groups_of(self, process: int) -> list[int]:
        return list(range(process, self.sessions, self.processes))


def parse_args(argv: Sequence[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser = argparse.ArgumentParser(
        prog="trio-sessions-load",
        description="Load a running trio-sessions server and report delivery and latency.",
    )
    add = parser.add_argument
    add(
        "--url", default="ws://127.0.0.1:8765/ws", help="server WebSocket URL (default %(default)s)"
    )
    add("--sessions", type=int, default=10, help="sessions to open (default %(default)s)")
    add(
        "--participants",
        type=int,
        default=10,
        help="clients per session, host included (default %(default)s)",
    )
    add("--rooms", type=int, default=1, help="rooms per session (default %(default)s)")
    add(
        "--rate",
        type=float,
        default=1.0,
        help="room messages per second per client (default %(default)s)",
    )
    add(
        "--patch-rate",
        type=float,
        default=0.0,
        help="state patches per second per host (default %(default)s)",
    )
    add(
        "--churn",
        type=float,
        default=0.0,
        help="fraction of clients that drop and resume per minute (default %(default)s)",
    )
    add(
        "--ramp-up",
        type=float,
        default=500.0,
        help="clients connected per second, 0 for all at once (default %(default)s)",
    )
    add(
        "--duration",
        type=float,
        default=30.0,
        help="seconds of load after everyone joined (default %(default)s)",
    )
    add(
        "--drain",
        type=float,
        default=2.0,
        help="seconds to wait for late deliveries (default %(default)s)",
    )
    add(
        "--message-size",
        type=int,
        default=64,
        help="bytes of data per room message (default %(default)s)",
    )
    add(
        "--processes",
        type=int,
        default=cores,
        help="load processes (default: one per core, %(default)s)",
    )
    add(
        "--metrics-url",
        help=f"the server's /metrics (default: http://HOST:{ADMIN_PORT}/metrics, the admin port "
        "of the --url host; its bearer token from TRIO_SESSIONS_ADMIN_TOKEN)",
    )
    add("--seed", type=int, default=0)
    add("--json", metavar="FILE", help="also write the report as JSON to FILE")
    add("--no-progress", action="store_true", help="no live display")
    args = parser.parse_args(argv)
    clients = args.sessions * args.participants
    if not 1 <= clients <= MAX_CLIENTS or args.participants < 1:
        parser.error(f"sessions x participants must be 1..{MAX_CLIENTS}")
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION:.0f}]")
    if args.rooms < 1 or min(args.rate, args.patch_rate, args.churn, args.ramp_up) < 0:
        parser.error("--rooms must be >= 1 and rates >= 0")
    try:
        split_url(args.url)
    except ValueError as error:
        parser.error(str(error))
    plan = Plan(
        url=args.url,
        sessions=args.sessions,
        participants=args.participants,
        rooms=args.rooms,
        rates=Rates(args.rate, args.patch_rate, args.churn),
        ramp_up=args.ramp_up,
        duration=args.duration,
        drain=args.drain,
        message_size=args.message_size,
        processes=max(1, min(args.processes, args.sessions)),
        seed=args.seed,
        metrics_url=args.metrics_url or default_metrics_url(args.url),
    )
    return plan, args


def default_metrics_url(url: str) -> str:
    """``/metrics`` on the default admin port of the host of the WebSocket ``url``."""
    host, _, _ = split_url(url)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{ADMIN_PORT}/metrics"
