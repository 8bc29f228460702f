"""The wire protocol: typed requests and events, error and close codes, and their JSON codec."""

from ._codec import Ref as Ref
from ._codec import decode_event as decode_event
from ._codec import decode_request as decode_request
from ._codec import encode as encode
from ._codec import encode_error as encode_error
from ._codec import encode_event as encode_event
from ._codec import encode_reply as encode_reply
from ._codec import unstructure as unstructure
from ._errors import CloseCode as CloseCode
from ._errors import ErrorCode as ErrorCode
from ._errors import ProtocolError as ProtocolError
from ._events import *  # noqa: F403
from ._events import EVENT_TYPES as EVENT_TYPES
from ._requests import *  # noqa: F403
from ._requests import REQUEST_TYPES as REQUEST_TYPES
