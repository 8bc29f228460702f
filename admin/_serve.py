"""The operators' surface of one server, as ``serve()`` starts it: readiness, metrics, the stats
line, the public port's plain-HTTP routes, and the admin listener (hypercorn's Trio worker).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Final, NoReturn

import hypercorn
import orjson
import trio
from hypercorn.trio import serve as hypercorn_serve

from gateway import AbuseStatistics, GcPauses, is_loopback

from ._app import AdminApp
from ._health import ALIVE, Readiness, probe_store
from ._logs import log_stats
from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._metrics import Metrics, ServerCollector
from ._routes import JSON, AdminApi, NotifyUser
from ._schemas import converter

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors import Config, Supervisor
    from cluster import ClusterNode
    from gateway import Counters
    from store import RelationStore, Store
    from transport import HttpRoute

logger = logging.getLogger(__name__)

READ_TIMEOUT: Final = 30  # seconds an admin connection may take to send its request
_HTTP_LOG: Final = logging.getLogger(__name__ + ".http")  # hypercorn's own messages


class AdminConfigError(ValueError):
    """The admin listener would be reachable from other hosts without a token."""


def admin_config_problem(config: Config) -> str | None:
    """Why the admin listener must not start as configured, if it must not."""
    if config.admin_port == -1 or config.admin_token or is_loopback(config.admin_host):
        return None
    return (
        f"the admin API on {config.admin_host or 'every interface'} (not a loopback address) "
        "needs a token: set --admin-token or TRIO_SESSIONS_ADMIN_TOKEN"
    )


def url_of(host: str, port: int) -> str:
    """``http://host:port``, with brackets around an IPv6 address."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Operations:
    """Readiness, metrics, the stats line and the admin API of one server.

    ``relations``, ``on_relations_changed(ward)`` and ``notify_user(user, topic, data)`` are
    optional hooks of the admin API (without them, those endpoints answer 501); ``abuse``
    reads the abuse limits' statistics for ``/metrics``; ``cluster`` (cluster mode) is this
    node, for ``/api/v1/cluster`` and the ``cluster_*`` metrics.
    """

    def __init__(
        self,
        config: Config,
        supervisor: Supervisor,
        counters: Counters,
        store: Store,
        *,
        relations: RelationStore | None = None,
        on_relations_changed: Callable[[str], None] | None = None,
        notify_user: NotifyUser | None = None,
        abuse: Callable[[], AbuseStatistics] | None = None,
        cluster: ClusterNode | None = None,
    ) -> None:
        self.config = config
        self.readiness = Readiness()
        self._supervisor = supervisor
        self._counters = counters
        self._store = store
        self._gc_pauses = GcPauses() if config.metrics else None
        self.metrics = (
            Metrics(
                ServerCollector(
                    supervisor,
                    counters,
                    store,
                    self._gc_pauses,
                    abuse,
                    None if cluster is None else cluster.statistics,
                )
            )
            if config.metrics
            else None
        )
        api = AdminApi(
            config=config,
            supervisor=supervisor,
            store=store,
            readiness=self.readiness,
            metrics=self.metrics,
            relations=relations,
            notify_user=notify_user,
            cluster=cluster,
        )
        if on_relations_changed is not None:
            api.on_relations_changed = on_relations_changed
        self.app = AdminApp(api)

    def public_routes(self) -> dict[str, HttpRoute]:
        """``/healthz`` and ``/readyz`` for the public port, and ``/metrics`` with
        ``public_metrics``."""
        routes: dict[str, HttpRoute] = {
            "/healthz": lambda _path: (200, JSON, orjson.dumps(converter.unstructure(ALIVE))),
            "/readyz": self._readyz,
        }
        if self.metrics is not None and self.config.public_metrics:
            metrics = self.metrics
            routes["/metrics"] = lambda _path: (200, METRICS_CONTENT_TYPE, metrics.render())
        return routes

    def _readyz(self, _path: str) -> tuple[int, str, bytes]:
        state = self.readiness.state()
        return 200 if state.ready else 503, JSON, orjson.dumps(converter.unstructure(state))

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Watch the collector's pauses (for metrics), probe the store (for readiness) and log
        the stats line, until cancelled."""
        if self._gc_pauses is not None:
            self._gc_pauses.install()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe_store, self._store, self.readiness)
                if self.config.stats_interval > 0:
                    stats = partial(log_stats, self._supervisor, self._counters)
                    nursery.start_soon(stats, self.config.stats_interval)
                task_status.started()
                await trio.sleep_forever()
        finally:
            if self._gc_pauses is not None:
                self._gc_pauses.remove()

    async def start_admin(self, nursery: trio.Nursery) -> int | None:
        """Start the admin listener in ``nursery`` (unless ``admin_port`` is -1); its port.

        Raises :class:`AdminConfigError` for a non-loopback address without a token, and
        ``OSError`` when the address cannot be bound.
        """
        config = self.config
        if config.admin_port == -1:
            return None
        if problem := admin_config_problem(config):
            raise AdminConfigError(problem)
        port: int = await nursery.start(self._serve_admin)
        logger.info("admin API on %s", url_of(config.admin_host, port))
        return port

    async def _serve_admin(self, *, task_status: trio.TaskStatus[int]) -> None:
        settings = hypercorn.Config()
        host, port = self.config.admin_host, self.config.admin_port
        settings.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        settings.accesslog = None
        settings.errorlog = _HTTP_LOG
        _HTTP_LOG.setLevel(logging.WARNING)  # not its "Running on ..." line: we log our own
        settings.read_timeout = READ_TIMEOUT
        settings.include_server_header = False
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                partial(hypercorn_serve, self.app, settings, mode="asgi")
            )
            task_status.started(int(binds[0].rsplit(":", 1)[1]))
