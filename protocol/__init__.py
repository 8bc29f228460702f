"""The wire protocol: typed requests, replies and events, error and close codes, their JSON codec,
resume tokens and the JSON merge patch both ends apply."""

from ._codec import MAX_DEPTH as MAX_DEPTH
from ._codec import MAX_REF_LENGTH as MAX_REF_LENGTH
from ._codec import Ref as Ref
from ._codec import decode_event as decode_event
from ._codec import decode_reply as decode_reply
from ._codec import decode_request as decode_request
from ._codec import encode as encode
from ._codec import encode_error as encode_error
from ._codec import encode_event as encode_event
from ._codec import encode_reply as encode_reply
from ._codec import too_deep as too_deep
from ._codec import unstructure as unstructure
from ._errors import ABNORMAL_CLOSURE as ABNORMAL_CLOSURE
from ._errors import CloseCode as CloseCode
from ._errors import ErrorCode as ErrorCode
from ._errors import ProtocolError as ProtocolError
from ._events import *  # noqa: F403
from ._events import CLOSE_REASONS as CLOSE_REASONS
from ._events import EVENT_TYPES as EVENT_TYPES
from ._merge_patch import merge_patch as merge_patch
from ._notices import *  # noqa: F403
from ._notices import NOTICE_TYPES as NOTICE_TYPES
from ._replies import *  # noqa: F403
from ._replies import REPLY_TYPES as REPLY_TYPES
from ._requests import *  # noqa: F403
from ._requests import MAX_META_SIZE as MAX_META_SIZE
from ._requests import MAX_USER_ID_LENGTH as MAX_USER_ID_LENGTH
from ._requests import REQUEST_TYPES as REQUEST_TYPES
from ._requests import SESSION_REQUESTS as SESSION_REQUESTS
from ._tokens import SECRET_BYTES as SECRET_BYTES
from ._tokens import ResumeToken as ResumeToken
from ._tokens import hash_secret as hash_secret
from ._tokens import new_secret as new_secret
from ._tokens import parse_token as parse_token
from ._tokens import secret_matches as secret_matches
