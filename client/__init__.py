"""A Python client for trio-sessions, with automatic reconnection that loses no event."""

from ._backoff import Backoff as Backoff
from ._client import Client as Client
from ._client import ClientEvent as ClientEvent
from ._client import ConnectionEvent as ConnectionEvent
from ._client import ConnectionState as ConnectionState
from ._client import connect as connect
from ._errors import ConnectionLost as ConnectionLost
from ._errors import LinkClosed as LinkClosed
from ._errors import RequestError as RequestError
from ._links import Link as Link
from ._links import Opener as Opener
from ._links import WebSocketLink as WebSocketLink
from ._links import websocket_opener as websocket_opener
