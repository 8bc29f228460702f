"""The actor system: a supervisor and one actor per session. Imports nothing but ``protocol``.

Connections reach an actor through its :class:`SessionHandle` (inbox messages) and are reached
through the :class:`Peer` interface, which never blocks.
"""

from ._config import Config as Config
from ._counters import ActorCounters as ActorCounters
from ._environment import SIMULATED_EPOCH as SIMULATED_EPOCH
from ._environment import Environment as Environment
from ._inspection import SeatView as SeatView
from ._inspection import SessionView as SessionView
from ._messages import CloseIfIdle as CloseIfIdle
from ._messages import CloseSession as CloseSession
from ._messages import Command as Command
from ._messages import Directory as Directory
from ._messages import Inspect as Inspect
from ._messages import Message as Message
from ._messages import NoDirectory as NoDirectory
from ._messages import Peer as Peer
from ._messages import PeerGone as PeerGone
from ._messages import SessionHandle as SessionHandle
from ._persistence import ClosedSession as ClosedSession
from ._persistence import Loaded as Loaded
from ._persistence import NoStore as NoStore
from ._persistence import SessionChange as SessionChange
from ._persistence import SessionRecord as SessionRecord
from ._persistence import SessionStore as SessionStore
from ._persistence import StoredParticipant as StoredParticipant
from ._persistence import StoredRoom as StoredRoom
from ._persistence import StoredSession as StoredSession
from ._session import SessionActor as SessionActor
from ._session import SessionStatistics as SessionStatistics
from ._supervisor import CODE_ALPHABET as CODE_ALPHABET
from ._supervisor import Opened as Opened
from ._supervisor import Supervisor as Supervisor
from ._supervisor import SupervisorStatistics as SupervisorStatistics
