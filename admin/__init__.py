"""The operators' surface: the admin HTTP API, metrics, structured logs and the admin CLI.

``serve()`` builds one :class:`Operations` per server: it answers ``/healthz`` and ``/readyz``
on both ports, serves ``/metrics`` (the admin port; the public one with ``public_metrics``),
logs the stats line, and runs the admin API (``/api/v1/...``, see docs/operations.md) on its own
listener. Every admin action reaches a session as a message in its actor's inbox.
"""

from ._app import MAX_BODY as MAX_BODY
from ._app import AdminApp as AdminApp
from ._cli import cli_main as cli_main
from ._health import Readiness as Readiness
from ._logs import JsonFormatter as JsonFormatter
from ._logs import configure_logging as configure_logging
from ._logs import log_stats as log_stats
from ._metrics import CONTENT_TYPE as CONTENT_TYPE
from ._metrics import Metrics as Metrics
from ._metrics import ServerCollector as ServerCollector
from ._openapi import json_schema as json_schema
from ._openapi import openapi_document as openapi_document
from ._routes import AdminApi as AdminApi
from ._routes import NotifyUser as NotifyUser
from ._routes import Operation as Operation
from ._routes import operations as operations
from ._serve import AdminConfigError as AdminConfigError
from ._serve import Operations as Operations
from ._serve import admin_config_problem as admin_config_problem
from ._serve import url_of as url_of
from ._sessions import ANSWER_TIMEOUT as ANSWER_TIMEOUT
from ._sessions import CLOSE_TIMEOUT as CLOSE_TIMEOUT
