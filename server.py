"""trio-sessions server: ``python server.py [--port 8765] [--log-level info] ...``.

Every setting of :class:`actors.Config` is a flag (``--max-rooms 20``) and an environment
variable (``TRIO_SESSIONS_MAX_ROOMS=20``); flags win. SIGTERM or Ctrl-C stops the server
gracefully (clients told 1012, sessions flushed to the store); a second signal exits at once.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import attrs
import trio

from actors import Config, Environment, Supervisor
from gateway import (
    CLIENT_PATH,
    DEMO_PREFIX,
    METRICS_CONTENT_TYPE,
    Connection,
    Counters,
    GcPauses,
    StaticFiles,
    render_metrics,
)
from store import Store, StoreError, open_store
from transport import HttpRoute, Transport, serve_websocket

logger = logging.getLogger("trio_sessions")

ENV_PREFIX = "TRIO_SESSIONS_"
HARD_FRAME_FACTOR = 2  # messages over this many times max_message_size are refused unread (1009)
# Long-lived servers allocate few cyclic structures: collect the youngest generation rarely.
GC_THRESHOLD = 50_000
# Nothing the server does leaves cyclic garbage (tests/test_gc.py checks it), so objects can be
# frozen out of the collector's reach as they age: a full collection then walks only what was
# made since the last freeze, and a frozen object is still freed when its last reference goes.
GC_REFREEZE_INTERVAL = 30.0  # seconds
CLI_DEFAULTS = {"store": "sqlite:trio-sessions.db"}  # where the command line differs from Config


@attrs.frozen
class Server:
    """A running server, as ``serve`` reports it to whoever started it.

    ``shutdown()`` stops it gracefully: no new connections, every client closed with 1012,
    every session handed to the store, which is flushed within ``config.shutdown_timeout``;
    then ``serve`` returns.
    """

    config: Config
    supervisor: Supervisor
    counters: Counters
    port: int | None  # the bound TCP port; None on in-memory listeners
    shutdown: Callable[[], None]
    store: Store


AcceptLoop = Callable[..., Awaitable[object]]
"""``accept(handler, task_status=...)``: feeds transports to ``handler``; reports when ready."""


async def serve(
    config: Config,
    *,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] | None = None,
    accept: AcceptLoop | None = None,
    env: Environment | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server until cancelled or shut down; reports a :class:`Server` once it accepts
    connections, after the sessions of ``config.store`` are back (hibernating).

    Connections come from ``accept`` (e.g. the simulated network's), else WebSocket on
    ``listeners``, else WebSocket on TCP at ``config.host:config.port`` (port 0 picks one).
    ``env`` is where ids, secrets and display times come from (a simulation seeds it).
    Raises :class:`store.StoreError` when the store cannot be opened: nothing is served then.
    """
    env = env or Environment.production()
    with trio.CancelScope() as drain:  # bounds the final flush once shutdown() is called
        async with open_store(
            config.store,
            durability=config.durability,
            history_retention=config.history_retention,
            tail_limit=config.event_log_size,
            wall=env.wall,
        ) as store:
            loaded = await store.load(tails=False)  # a tail is read when first needed
            async with trio.open_nursery() as nursery:
                supervisor: Supervisor = await nursery.start(Supervisor(config, env, store).run)
                supervisor.restore(loaded)
                counters = Counters()

                async def handle(transport: Transport) -> None:
                    await Connection(transport, supervisor, config, counters, env).serve()

                def shutdown() -> None:
                    logger.info("shutting down within %ss", config.shutdown_timeout)
                    drain.deadline = trio.current_time() + config.shutdown_timeout
                    nursery.cancel_scope.cancel()

                if accept is not None:
                    await nursery.start(accept, handle)
                    port = None
                else:
                    port = await _serve_websocket(
                        nursery, handle, config, supervisor, counters, listeners
                    )
                task_status.started(Server(config, supervisor, counters, port, shutdown, store))


async def _serve_websocket(
    nursery: trio.Nursery,
    handle: Callable[[Transport], Awaitable[None]],
    config: Config,
    supervisor: Supervisor,
    counters: Counters,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] | None,
) -> int | None:
    if listeners is None:
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    static = StaticFiles()
    routes: dict[str, HttpRoute] = {CLIENT_PATH: static, DEMO_PREFIX: static}
    if config.metrics:
        gc_pauses = GcPauses().install()
        nursery.start_soon(_remove_on_exit, gc_pauses)
        routes["/healthz"] = lambda _path: (200, "application/json", b'{"ok":true}')
        routes["/metrics"] = lambda _path: (
            200,
            METRICS_CONTENT_TYPE,
            render_metrics(supervisor, counters, gc_pauses).encode(),
        )
    websocket = partial(
        serve_websocket,
        handle,
        listeners,
        max_frame_size=HARD_FRAME_FACTOR * config.max_message_size,
        send_buffer_size=config.send_buffer_size,
        max_frame_rate=config.frame_rate,  # 0: off
        frame_burst=config.frame_burst,
        http_routes=routes,
    )
    await nursery.start(websocket)
    if not isinstance(listeners[0], trio.SocketListener):
        return None
    port: int = listeners[0].socket.getsockname()[1]
    logger.info("listening on ws://%s:%s/ws", config.host, port)
    return port


async def _remove_on_exit(gc_pauses: GcPauses) -> None:
    try:
        await trio.sleep_forever()
    finally:
        gc_pauses.remove()


def _field_help() -> dict[str, str]:
    """Each Config field's ``--help`` line: the comment after it in ``actors/_config.py``."""
    source = inspect.getsource(Config)
    return dict(re.findall(r"^    (\w+): [^#\n]*#\s*(.+)$", source, re.MULTILINE))


def parse_args(
    argv: Sequence[str] | None = None, env: dict[str, str] | None = None
) -> tuple[Config, str]:
    """Build the config from flags, then ``TRIO_SESSIONS_*`` variables, then defaults."""
    env = dict(os.environ if env is None else env)
    parser = argparse.ArgumentParser(
        prog="trio-sessions", description="Run the trio-sessions WebSocket server."
    )
    help_lines = _field_help()
    for field in attrs.fields(attrs.resolve_types(Config)):
        kind = field.type if field.type in (int, float) else _flag if field.type is bool else str
        variable = ENV_PREFIX + field.name.upper()
        fallback = CLI_DEFAULTS.get(field.name, field.default)
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=kind,
            default=kind(env[variable]) if variable in env else fallback,
            metavar=getattr(field.type, "__name__", "value").upper(),
            help=f"{help_lines.get(field.name, '')} (env {variable}; default {fallback})",
        )
    parser.add_argument(
        "--log-level",
        default=env.get(ENV_PREFIX + "LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help=f"log verbosity (env {ENV_PREFIX}LOG_LEVEL; default info)",
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
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(*, task_status: trio.TaskStatus[Server]) -> None:
                await serve(config, task_status=task_status)
                nursery.cancel_scope.cancel()  # served and drained: stop watching signals

            server: Server = await nursery.start(serve_then_stop)
            # What exists now lives as long as the server: keep the collector off it for good,
            # and off whatever lives longer than GC_REFREEZE_INTERVAL from then on.
            gc.freeze()
            nursery.start_soon(_refreeze)
            stopping = False
            async for signum in signals:
                if stopping:
                    logger.warning("%s again: exiting at once", signal.Signals(signum).name)
                    os._exit(1)
                logger.info("%s: stopping", signal.Signals(signum).name)
                stopping = True
                server.shutdown()


async def _refreeze() -> None:
    while True:
        await trio.sleep(GC_REFREEZE_INTERVAL)
        gc.freeze()


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    config, log_level = parse_args(argv)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Long-lived servers allocate few cyclic structures, and start-up builds many objects (the
    # restored sessions): collect the youngest generation rarely from the start.
    gc.set_threshold(GC_THRESHOLD)
    try:
        trio.run(_run, config)
    except* StoreError as group:
        for error in group.exceptions:
            logger.error("%s", error)
        sys.exit(2)
    logger.info("stopped")


if __name__ == "__main__":
    main()
