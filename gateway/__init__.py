"""Per-connection code between transports and actors: hello, routing, ordering of replies, rate
limits, heartbeats, counters and their metrics exposition."""

from ._connection import Connection as Connection
from ._counters import METRICS as METRICS
from ._counters import METRICS_CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._counters import Counters as Counters
from ._counters import Metric as Metric
from ._counters import render_metrics as render_metrics
from ._rate_limit import TokenBucket as TokenBucket
from ._seats import Seat as Seat
from ._seats import SeatMap as SeatMap
