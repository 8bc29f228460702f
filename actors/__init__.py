"""The actor system: a supervisor, one actor per session, one task group per connection."""

from ._config import Config as Config
from ._connection import Connection as Connection
from ._connection import ConnectionCounters as ConnectionCounters
from ._messages import Command as Command
from ._messages import Peer as Peer
from ._messages import PeerGone as PeerGone
from ._metrics import METRICS_CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._metrics import render_metrics as render_metrics
from ._session import SessionActor as SessionActor
from ._session import SessionStatistics as SessionStatistics
from ._supervisor import CODE_ALPHABET as CODE_ALPHABET
from ._supervisor import CODE_LENGTH as CODE_LENGTH
from ._supervisor import SessionHandle as SessionHandle
from ._supervisor import Supervisor as Supervisor
from ._supervisor import SupervisorStatistics as SupervisorStatistics
