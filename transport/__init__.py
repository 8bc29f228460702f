"""Transports: how frames get between clients and connection tasks."""

from ._base import Transport as Transport
from ._base import TransportClosed as TransportClosed
from ._memory import MemoryListener as MemoryListener
from ._websocket import WS_PATH as WS_PATH
from ._websocket import HttpRoute as HttpRoute
from ._websocket import WebSocketTransport as WebSocketTransport
from ._websocket import serve_websocket as serve_websocket
