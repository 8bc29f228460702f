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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

import attrs
import trio

from actors import Config, Environment, Supervisor
from admin import (
    AdminConfigError,
    Operations,
    Readiness,
    admin_config_problem,
    cli_main,
    configure_logging,
)
from cluster import Cluster, ClusterError, ClusterNode, open_cluster
from gateway import (
    CLIENT_PATH,
    DEMO_PREFIX,
    Connection,
    Counters,
    Gateway,
    StaticFiles,
    UserDirectory,
    exposure,
)
from store import RelationStore, Store, StoreError, open_relations, open_store, relations_main
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
    admin_port: int | None  # the admin API's port; None when off (-1) or with ``accept``
    shutdown: Callable[[], None]
    store: Store
    readiness: Readiness  # what /readyz reports: draining once shutdown() is called
    relations: RelationStore  # wards' accepted guardians (live sessions), in the store's file
    cluster: ClusterNode | None = None  # cluster mode (--cluster): this node


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
    Raises :class:`store.StoreError` when the store cannot be opened, and
    :class:`admin.AdminConfigError` for an admin listener off loopback without a token: nothing
    is served then. The admin API (``config.admin_port``; not with ``accept``) stays up until
    the store has written the sessions' last changes, ``/readyz`` answering 503 meanwhile.
    """
    if problem := admin_config_problem(config):
        raise AdminConfigError(problem)
    env = env or Environment.production()
    with trio.CancelScope() as drain:  # bounds the final flush once shutdown() is called
        async with _session_store(config, env) as (store, cluster):
            loaded = await store.load(tails=False)  # a tail is read when first needed
            # The admin listener outlives the sessions: /readyz says 503 while the store flushes.
            async with (
                open_relations(config.store, wall=env.wall) as relations,
                trio.open_nursery() as admin_nursery,
            ):
                async with trio.open_nursery() as nursery:
                    directory = UserDirectory()
                    codes = None if cluster is None else cluster.membership
                    supervisor: Supervisor = await nursery.start(
                        Supervisor(config, env, store, directory, codes).run
                    )
                    supervisor.restore(loaded)
                    node = None if cluster is None else ClusterNode(cluster, supervisor, config)
                    if node is not None:
                        await nursery.start(node.run)
                    counters = Counters()
                    gateway = Gateway.build(
                        config,
                        supervisor,
                        counters,
                        env,
                        directory,
                        relations,
                        locate=None if node is None else node.locate,
                    )
                    operations = Operations(
                        config,
                        supervisor,
                        counters,
                        store,
                        relations=relations,
                        on_relations_changed=partial(
                            _follow_relations, nursery, supervisor, relations
                        ),
                        notify_user=lambda user, topic, data: directory.notify(
                            user, topic, data, env.iso()
                        ),
                        abuse=gateway.guard.statistics,
                        cluster=node,
                    )
                    logger.log(
                        logging.INFO if config.auth_enabled else logging.WARNING,
                        "%s",
                        exposure(config)[1],
                    )

                    async def handle(transport: Transport) -> None:
                        await Connection(transport, gateway).serve()

                    def shutdown() -> None:
                        logger.info("shutting down within %ss", config.shutdown_timeout)
                        operations.readiness.draining = True
                        drain.deadline = trio.current_time() + config.shutdown_timeout
                        nursery.cancel_scope.cancel()

                    port = admin_port = None
                    if accept is not None:
                        await nursery.start(accept, handle)
                    else:
                        await nursery.start(operations.run)
                        # the admin listener first: "listening on" means both are up
                        admin_port = await operations.start_admin(admin_nursery)
                        routes = operations.public_routes()
                        port = await _serve_websocket(
                            nursery, handle, config, counters, routes, listeners
                        )
                        if node is not None and port is not None:
                            await node.advertise(f"ws://{config.host}:{port}/ws")
                    operations.readiness.listening = True
                    task_status.started(
                        Server(
                            config,
                            supervisor,
                            counters,
                            port,
                            admin_port,
                            shutdown,
                            store,
                            operations.readiness,
                            relations,
                            node,
                        )
                    )
                await store.commit()  # the sessions' last changes, the admin API still up
                admin_nursery.cancel_scope.cancel()


@asynccontextmanager
async def _session_store(
    config: Config, env: Environment
) -> AsyncIterator[tuple[Store, Cluster | None]]:
    """The session store: ``config.store``, or the cluster's shared one (``--cluster``)."""
    if config.cluster:
        async with open_cluster(config, env) as cluster:
            yield cluster.store, cluster
        return
    async with open_store(
        config.store,
        durability=config.durability,
        history_retention=config.history_retention,
        tail_limit=config.event_log_size,
        wall=env.wall,
    ) as store:
        yield store, None


def _follow_relations(
    nursery: trio.Nursery, supervisor: Supervisor, relations: RelationStore, ward: str
) -> None:
    """An operator changed ``ward``'s relations: a live session of the ward follows."""

    async def follow() -> None:
        if supervisor.live_session_of(ward) is not None:
            await supervisor.set_guardians(ward, await relations.guardians(ward))

    nursery.start_soon(follow)


async def _serve_websocket(
    nursery: trio.Nursery,
    handle: Callable[[Transport], Awaitable[None]],
    config: Config,
    counters: Counters,
    operator_routes: dict[str, HttpRoute],
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] | None,
) -> int | None:
    if listeners is None:
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    static = StaticFiles()
    routes: dict[str, HttpRoute] = {CLIENT_PATH: static, DEMO_PREFIX: static, **operator_routes}
    websocket = partial(
        serve_websocket,
        handle,
        listeners,
        max_frame_size=HARD_FRAME_FACTOR * config.max_message_size,
        send_buffer_size=config.send_buffer_size,
        max_frame_rate=config.frame_rate,  # 0: off
        frame_burst=config.frame_burst,
        http_routes=routes,
        on_write_pass=counters.observe_fanout,
    )
    await nursery.start(websocket)
    if not isinstance(listeners[0], trio.SocketListener):
        return None
    port: int = listeners[0].socket.getsockname()[1]
    logger.info("listening on ws://%s:%s/ws", config.host, port)
    return port


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
        shown = "none" if fallback == "" else fallback
        flag = field.type is bool
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=kind,
            # a boolean flag alone means true (--insecure); with a value, that value
            nargs="?" if flag else None,
            const=True if flag else None,
            default=kind(env[variable]) if variable in env else fallback,
            metavar=getattr(field.type, "__name__", "value").upper(),
            help=f"{help_lines.get(field.name, '')} (env {variable}; default {shown})",
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
        config = Config(**args)
    except ValueError as error:
        parser.error(str(error))
    if problem := admin_config_problem(config):
        parser.error(problem)
    return config, log_level


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
    """Console entry point: the server, ``trio-sessions admin ...`` (the admin CLI), or
    ``trio-sessions relations ...`` (ward/guardian relations in the store)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["admin"]:
        sys.exit(cli_main(argv[1:]))
    if argv[:1] == ["relations"]:
        sys.exit(relations_main(argv[1:]))
    config, log_level = parse_args(argv)
    allowed, why = exposure(config)
    if not allowed:
        print(f"trio-sessions: {why}", file=sys.stderr)
        sys.exit(2)
    configure_logging(log_level, config.log_format)
    # Long-lived servers allocate few cyclic structures, and start-up builds many objects (the
    # restored sessions): collect the youngest generation rarely from the start.
    gc.set_threshold(GC_THRESHOLD)
    try:
        trio.run(_run, config)
    except* (StoreError, ClusterError) as group:
        for error in _leaves(group):  # a library's task group may have wrapped it once more
            logger.error("%s", error)
        sys.exit(2)
    logger.info("stopped")


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


if __name__ == "__main__":
    main()
