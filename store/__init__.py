"""Where sessions outlive the process: the implementations of :class:`actors.SessionStore`.

``open_store("memory")`` keeps nothing; ``open_store("sqlite:PATH")`` keeps each live session's
latest record and event tail, and a bounded history of closed sessions, in one SQLite file
(WAL, write-behind batches, one writer thread). See ``STORE.md`` for operators.
"""

from ._api import Store as Store
from ._api import StoreError as StoreError
from ._api import StoreStatistics as StoreStatistics
from ._memory import MemoryStore as MemoryStore
from ._open import DEFAULT_URL as DEFAULT_URL
from ._open import HISTORY_RETENTION as HISTORY_RETENTION
from ._open import open_store as open_store
from ._pending import WRITE_BEHIND as WRITE_BEHIND
from ._pending import Batch as Batch
from ._pending import Pending as Pending
from ._pending import PendingWrites as PendingWrites
from ._pending import batch_written as batch_written
from ._relations import Relation as Relation
from ._relations import RelationStore as RelationStore
from ._relations import open_relations as open_relations
from ._relations_cli import relations_main as relations_main
from ._schema import MIGRATIONS as MIGRATIONS
from ._schema import SCHEMA_VERSION as SCHEMA_VERSION
from ._sqlite import DURABILITY as DURABILITY
from ._sqlite import PRUNE_INTERVAL as PRUNE_INTERVAL
from ._sqlite import TAIL_LIMIT as TAIL_LIMIT
from ._sqlite import SqliteStore as SqliteStore
from ._sqlite import backup_file as backup_file
