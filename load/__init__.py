"""Load generation against a running server: the ``trio-sessions-load`` CLI and its engine."""

from client import LinkClosed as LinkClosed  # the one link error, shared with the client

from ._cli import main as main
from ._dialects import Dialect as Dialect
from ._dialects import Group as Group
from ._dialects import RequestFailed as RequestFailed
from ._dialects import Seat as Seat
from ._dialects import TrioSessions as TrioSessions
from ._link import Link as Link
from ._options import Plan as Plan
from ._report import report as report
from ._runner import run as run
from ._stats import Stats as Stats
from ._swarm import Rates as Rates
from ._swarm import Swarm as Swarm
