"""The server's edge, between transports and actors: per connection (hello, routing, ordering of
replies, rate limits, heartbeats), the counters ``/metrics`` reads, and the static files
(browser client, demo) served on the public port."""

from ._abuse import AbuseGuard as AbuseGuard
from ._abuse import AbuseStatistics as AbuseStatistics
from ._connection import Connection as Connection
from ._counters import FANOUT_BUCKETS as FANOUT_BUCKETS
from ._counters import Counters as Counters
from ._counters import Histogram as Histogram
from ._counters import MetricSpec as MetricSpec
from ._counters import metric_fields as metric_fields
from ._directory import UserDirectory as UserDirectory
from ._gateway import Gateway as Gateway
from ._gateway import exposure as exposure
from ._gateway import is_loopback as is_loopback
from ._gc_pauses import GcPauses as GcPauses
from ._seats import Seat as Seat
from ._seats import SeatMap as SeatMap
from ._static import CLIENT_PATH as CLIENT_PATH
from ._static import DEMO_PREFIX as DEMO_PREFIX
from ._static import StaticFiles as StaticFiles
