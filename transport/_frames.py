"""RFC 6455 framing: building frames and parsing a byte stream into messages.

Pure functions and one incremental parser, no I/O, so the server's WebSocket transport and the
load generator share them. Server frames are unmasked; client frames are masked with a random
key. Extensions are never negotiated, so the RSV bits must be clear. Unmasking XORs the payload
as one big integer, which CPython does in C.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Final

TEXT: Final = 0x1
BINARY: Final = 0x2
CONTINUATION: Final = 0x0
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

# Close codes the framing layer itself sends (RFC 6455 section 7.4.1).
PROTOCOL_ERROR: Final = 1002
INVALID_DATA: Final = 1007
MESSAGE_TOO_BIG: Final = 1009
NO_STATUS: Final = 1005  # reported when a close frame carries no code

MAX_FRAGMENTS: Final = 1024  # frames per message; past it the message is refused with 1009

_MAX_CONTROL: Final = 125
_ZERO_KEY = bytes(4)
_SHORT = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


class FrameError(Exception):
    """The peer broke the protocol; close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def xor_mask(data: bytes, key: bytes) -> bytes:
    """Apply (or remove) a 4-byte WebSocket mask."""
    n = len(data)
    if not n:
        return data
    mask = (key * ((n + 3) >> 2))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(mask, "little")).to_bytes(n, "little")


def build_frame(
    opcode: int, payload: bytes, *, mask: bool = False, key: bytes | None = None
) -> bytes:
    """One final frame; ``mask`` for frames a client sends, with a random ``key`` unless given."""
    n = len(payload)
    first = 0x80 | opcode
    masked = 0x80 if mask else 0
    if n < 126:
        header = bytes((first, masked | n))
    elif n < 1 << 16:
        header = _SHORT.pack(first, masked | 126, n)
    else:
        header = _LONG.pack(first, masked | 127, n)
    if not mask:
        return header + payload
    key = key or os.urandom(4)
    return header + key + (payload if key == _ZERO_KEY else xor_mask(payload, key))


@functools.lru_cache(maxsize=4)
def server_text_frame(text: str) -> bytes:
    """The server's frame for ``text``, cached: a broadcast frames its event once, not per peer."""
    return build_frame(TEXT, text.encode())


def close_payload(code: int, reason: str) -> bytes:
    """The body of a close frame; the reason is cut to fit a control frame."""
    return struct.pack("!H", code) + reason.encode()[: _MAX_CONTROL - 2]


def parse_close(payload: bytes) -> tuple[int, str]:
    """Code and reason of a received close frame."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close frame with a 1-byte body")
    code = struct.unpack_from("!H", payload)[0]
    if code < 1000 or code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000 or code >= 5000:
        raise FrameError(PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "close reason is not UTF-8") from None


Message = tuple[int, bytes]
"""``(opcode, payload)``: a whole TEXT or BINARY message, or one PING, PONG or CLOSE frame."""


class FrameParser:
    """Turns received bytes into whole messages, reassembling fragments.

    ``masked`` is what the peer must do: ``True`` when parsing a client's frames (server side).
    A message larger than ``max_size`` is refused from its header, before its payload arrives,
    and one split into more than ``max_fragments`` frames is refused at the frame past it (1009):
    a stream of empty continuation frames would otherwise grow the fragment list without limit.

    Linear in the bytes fed: unparsed bytes wait in one ``bytearray`` that grows in place and is
    compacted once per :meth:`feed` (only the unparsed tail moves), and fragments are joined once,
    when the message completes. :attr:`frames` counts every frame parsed, of any kind, so the
    caller can rate-limit frames rather than messages.
    """

    __slots__ = (
        "_buffer",
        "_fragments",
        "_fragments_size",
        "_kind",
        "_masked",
        "_max_fragments",
        "_max_size",
        "frames",
    )

    def __init__(self, *, masked: bool, max_size: int, max_fragments: int = MAX_FRAGMENTS) -> None:
        self._masked = masked
        self._max_size = max_size
        self._max_fragments = max_fragments
        self._buffer = bytearray()  # received, not yet parsed
        self._kind = 0  # opcode of the fragmented message in progress, 0 for none
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self.frames = 0  # frames parsed so far, of every kind

    def feed(self, data: bytes | memoryview) -> list[Message]:
        """Add received bytes; returns the messages now complete. Raises :class:`FrameError`."""
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray | memoryview = buffer
        else:
            source = data  # the common case: parse the read itself, copy only its unparsed tail
        out: list[Message] = []
        pos = self._parse(source, out)
        if source is buffer:
            del buffer[:pos]
        elif pos < len(data):
            buffer += memoryview(data)[pos:]
        return out

    def _parse(self, buffer: bytes | bytearray | memoryview, out: list[Message]) -> int:
        """Parse the whole frames in ``buffer`` into ``out``; returns where the first partial
        frame starts."""
        pos = 0
        end = len(buffer)
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            head = pos + 2
            if length == 126:
                if end - head < 2:
                    break
                length = int.from_bytes(buffer[head : head + 2], "big")
                head += 2
            elif length == 127:
                if end - head < 8:
                    break
                length = int.from_bytes(buffer[head : head + 8], "big")
                head += 8
            self._check_header(first, second, length)
            key_end = head + 4 if self._masked else head
            if end - key_end < length:
                break
            payload = bytes(buffer[key_end : key_end + length])
            if self._masked:
                payload = xor_mask(payload, bytes(buffer[head:key_end]))
            pos = key_end + length
            self.frames += 1
            message = self._complete(first, payload)
            if message is not None:
                out.append(message)
        return pos

    def _check_header(self, first: int, second: int, length: int) -> None:
        if first & 0x70:
            raise FrameError(PROTOCOL_ERROR, "reserved bits set without an extension")
        if bool(second & 0x80) is not self._masked:
            raise FrameError(PROTOCOL_ERROR, "client frames must be masked, server frames not")
        opcode = first & 0x0F
        if opcode >= CLOSE:
            if opcode > PONG:
                raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            if not first & 0x80 or length > _MAX_CONTROL:
                raise FrameError(PROTOCOL_ERROR, "control frames must be final and short")
            return
        if opcode > BINARY:
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if (opcode == CONTINUATION) is not bool(self._kind):
            raise FrameError(PROTOCOL_ERROR, "fragments out of order")
        if self._fragments_size + length > self._max_size:
            raise FrameError(MESSAGE_TOO_BIG, f"message over {self._max_size} bytes")
        if len(self._fragments) >= self._max_fragments:
            raise FrameError(MESSAGE_TOO_BIG, f"message in over {self._max_fragments} fragments")

    def _complete(self, first: int, payload: bytes) -> Message | None:
        opcode = first & 0x0F
        if opcode >= CLOSE or (first & 0x80 and not self._kind):
            return opcode, payload
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if opcode:
            self._kind = opcode
        if not first & 0x80:
            return None
        message = (self._kind, b"".join(self._fragments))
        self._kind = 0
        self._fragments = []
        self._fragments_size = 0
        return message
