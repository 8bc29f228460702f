"""Cluster mode (``--cluster redis://HOST:PORT/DB``): several server processes or machines
sharing one Redis. Each session is owned by one node (its actor runs there); the directory,
leases, fencing tokens, session records and the relay channels live in Redis. See
``docs/cluster.md`` for operators and ``_keys.py`` for the layout."""

from ._node import Cluster as Cluster
from ._node import ClusterError as ClusterError
from ._node import ClusterNode as ClusterNode
from ._node import open_cluster as open_cluster
from ._redis import REDIS_ERRORS as REDIS_ERRORS
from ._redis import redis_client as redis_client
from ._store import RedisStore as RedisStore
