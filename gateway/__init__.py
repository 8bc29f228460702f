"""The server's edge, between transports and actors: per connection (hello, routing, ordering of
replies, rate limits, heartbeats), counters and their metrics exposition, and the static files
(browser client, demo) served on the public port."""

from ._connection import Connection as Connection
from ._counters import METRICS as METRICS
from ._counters import METRICS_CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._counters import Counters as Counters
from ._counters import Metric as Metric
from ._counters import render_metrics as render_metrics
from ._gc_pauses import GcPauses as GcPauses
from ._seats import Seat as Seat
from ._seats import SeatMap as SeatMap
from ._static import CLIENT_PATH as CLIENT_PATH
from ._static import DEMO_PREFIX as DEMO_PREFIX
from ._static import StaticFiles as StaticFiles
