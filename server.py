"""trio-sessions server: ``python server.py [--port 8765] [--log-level info] ...``.

Every limit in :class:`actors.Config` is a flag (``--max-rooms 20``) and an environment variable
(``TRIO_SESSIONS_MAX_ROOMS=20``); flags win. Ctrl-C stops the server cleanly.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import logging
import math
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import NoReturn

import attrs
import trio

from actors import Config, Environment, Supervisor
from gateway import METRICS_CONTENT_TYPE, Connection, Counters, render_metrics
from transport import HttpRoute, Transport, serve_websocket

logger = logging.getLogger("trio_sessions")

ENV_PREFIX = "TRIO_SESSIONS_"
HARD_FRAME_FACTOR = 2  # messages over this many times max_message_size are refused unread (1009)
# Long-lived servers allocate few cyclic structures: collect the youngest generation rarely.
GC_THRESHOLD = 50_000


@attrs.frozen
class Server:
    """A running server, as ``serve`` reports it to whoever started it."""

    config: Config
    supervisor: Supervisor
    counters: Counters
    port: int | None  # the bound TCP port; None on in-memory listeners


AcceptLoop = Callable[..., Awaitable[object]]
"""``accept(handler, task_status=...)``: feeds transports to ``handler``; reports when ready."""


async def serve(
    config: Config,
    *,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] | None = None,
    accept: AcceptLoop | None = None,
    env: Environment | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run the server until cancelled; reports a :class:`Server` once it accepts connections.

    Connections come from ``accept`` (e.g. the simulated network's), else WebSocket on
    ``listeners``, else WebSocket on TCP at ``config.host:config.port`` (port 0 picks one).
    ``env`` is where ids, secrets and display times come from (a simulation seeds it).
    """
    env = env or Environment.production()
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(config, env).run)
        counters = Counters()

        async def handle(transport: Transport) -> None:
            await Connection(transport, supervisor, config, counters, env).serve()

        port = None
        if accept is not None:
            await nursery.start(accept, handle)
        else:
            if listeners is None:
                listeners = await trio.open_tcp_listeners(config.port, host=config.host)
            routes: dict[str, HttpRoute] = {}
            if config.metrics:
                routes["/healthz"] = lambda _path: (200, "application/json", b'{"ok":true}')
                routes["/metrics"] = lambda _path: (
                    200,
                    METRICS_CONTENT_TYPE,
                    render_metrics(supervisor, counters).encode(),
                )
            websocket = partial(
                serve_websocket,
                handle,
                listeners,
                max_frame_size=HARD_FRAME_FACTOR * config.max_message_size,
                send_buffer_size=config.send_buffer_size,
                max_frame_rate=config.frame_rate or math.inf,
                frame_burst=config.frame_burst,
                http_routes=routes,
            )
            await nursery.start(websocket)
            if isinstance(listeners[0], trio.SocketListener):
                port = listeners[0].socket.getsockname()[1]
                logger.info("listening on ws://%s:%s/ws", config.host, port)
        task_status.started(Server(config, supervisor, counters, port))
        await trio.sleep_forever()


def _field_help() -> dict[str, str]:
    """Each Config field's ``--help`` line: the comment after it in ``actors/_config.py``."""
    source = inspect.getsource(Config)
    return dict(re.findall(r"^    (\w+): [^#\n]*#\s*(.+)$", source, re.MULTILINE))


HELP = _field_help()


def parse_args(
    argv: Sequence[str] | None = None, env: dict[str, str] | None = None
) -> tuple[Config, str]:
    """Build the config from flags, then ``TRIO_SESSIONS_*`` variables, then defaults."""
    env = dict(os.environ if env is None else env)
    parser = argparse.ArgumentParser(
        prog="trio-sessions", description="Run the trio-sessions WebSocket server."
    )
    for field in attrs.fields(attrs.resolve_types(Config)):
        kind = field.type if field.type in (int, float) else _flag if field.type is bool else str
        variable = ENV_PREFIX + field.name.upper()
        default = kind(env[variable]) if variable in env else field.default
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=kind,
            default=default,
            metavar=getattr(field.type, "__name__", "value").upper(),
            help=f"{HELP.get(field.name, '')} (env {variable}; default {field.default})",
        )
    parser.add_argument(
        "--log-level",
        default=env.get(ENV_PREFIX + "LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help=f"(env {ENV_PREFIX}LOG_LEVEL; default info)",
    )
    args = vars(parser.parse_args(argv))
    log_level = args.pop("log_level")
    try:
        return Config(**args), log_level
    except ValueError as error:
        parser.error(str(error))


def _flag(text: str) -> bool:
    """A boolean flag or variable: 1/0, true/false, yes/no, on/off."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


async def _run(config: Config) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, config))
        # What exists now lives as long as the server: keep the collector off it for good.
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    config, log_level = parse_args(argv)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        trio.run(_run, config)
    except* KeyboardInterrupt:
        logger.info("stopped")


if __name__ == "__main__":
    main()
