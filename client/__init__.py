"""A Python client for trio-sessions, with automatic reconnection that loses no event."""

from ._api import Requests as Requests
from ._auth import REFRESH_AT as REFRESH_AT
from ._auth import TokenProvider as TokenProvider
from ._backoff import Backoff as Backoff
from ._client import Client as Client
from ._connect import connect as connect
from ._errors import ConnectionLost as ConnectionLost
from ._errors import LinkClosed as LinkClosed
from ._errors import RequestError as RequestError
from ._events import ClientEvent as ClientEvent
from ._events import ConnectionEvent as ConnectionEvent
from ._events import ConnectionState as ConnectionState
from ._events import LostReason as LostReason
from ._links import Link as Link
from ._links import Opener as Opener
from ._links import WebSocketLink as WebSocketLink
from ._links import failover_opener as failover_opener
from ._links import websocket_opener as websocket_opener
from ._reconnect import CONNECT_TIMEOUT as CONNECT_TIMEOUT
from ._seats import Seat as Seat
from ._seats import SeatTracker as SeatTracker
