"""Transports: how frames get between clients and connection tasks.

The table of contents: everything outside this package imports from here, never from a
``transport._x`` module.
"""

from ._base import SendBufferFull as SendBufferFull
from ._base import Transport as Transport
from ._base import TransportClosed as TransportClosed
from ._base import TransportError as TransportError
from ._coalescer import WriteCoalescer as WriteCoalescer
from ._frames import BINARY as BINARY
from ._frames import CLOSE as CLOSE
from ._frames import CONTINUATION as CONTINUATION
from ._frames import INVALID_DATA as INVALID_DATA
from ._frames import MAX_FRAGMENTS as MAX_FRAGMENTS
from ._frames import MESSAGE_TOO_BIG as MESSAGE_TOO_BIG
from ._frames import NO_STATUS as NO_STATUS
from ._frames import PING as PING
from ._frames import PONG as PONG
from ._frames import PROTOCOL_ERROR as PROTOCOL_ERROR
from ._frames import TEXT as TEXT
from ._frames import FrameError as FrameError
from ._frames import FrameParser as FrameParser
from ._frames import Message as Message
from ._frames import build_frame as build_frame
from ._frames import close_payload as close_payload
from ._frames import parse_close as parse_close
from ._frames import xor_mask as xor_mask
from ._handshake import MAX_REQUEST_HEAD as MAX_REQUEST_HEAD
from ._handshake import WS_PATH as WS_PATH
from ._handshake import HttpRoute as HttpRoute
from ._handshake import accept_key as accept_key
from ._memory import MemoryListener as MemoryListener
from ._rate import FRAME_BURST as FRAME_BURST
from ._rate import MAX_FRAME_RATE as MAX_FRAME_RATE
from ._rate import TokenBucket as TokenBucket
from ._send_queue import TransportStatistics as TransportStatistics
from ._serve import HANDSHAKE_TIMEOUT as HANDSHAKE_TIMEOUT
from ._serve import serve_websocket as serve_websocket
from ._websocket import POLICY_VIOLATION as POLICY_VIOLATION
from ._websocket import WebSocketTransport as WebSocketTransport
from ._websocket import open_websocket_transport as open_websocket_transport
