"""The yamux frame header: twelve bytes, big-endian.

Every yamux frame starts with the same header (spec: libp2p/specs
``yamux/README.md``)::

    version:u8 | type:u8 | flags:u16 | stream_id:u32 | length:u32

``length`` means different things per type: the payload size of a DATA
frame, the credit delta of a WINDOW_UPDATE, an opaque value echoed by
PING, and the error code of GO_AWAY. Only DATA frames carry a payload.

This module only encodes and decodes headers. The session core
(:mod:`guts.mux.yamux._session`) parses them straight from its receive
buffer with :data:`HEADER` for speed, and uses :func:`decode_header`
when it wants the checks spelled out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from guts.errors import DecodeError, LocalProtocolError

__all__ = [
    "VERSION",
    "HEADER",
    "HEADER_SIZE",
    "MAX_UINT32",
    "FrameType",
    "Flag",
    "GoAwayCode",
    "FrameHeader",
    "encode_header",
    "decode_header",
]

#: The only yamux version there is.
VERSION = 0
#: ``struct`` layout of the header (network byte order).
HEADER = struct.Struct(">BBHII")
#: Size of a header in bytes.
HEADER_SIZE = HEADER.size
#: Largest value of the stream id and length fields.
MAX_UINT32 = 0xFFFF_FFFF


class FrameType(IntEnum):
    """What a frame is for; selects the meaning of the length field."""

    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(IntFlag):
    """Header flags. Several may be set at once (``SYN | FIN``...)."""

    SYN = 1
    ACK = 2
    FIN = 4
    RST = 8


class GoAwayCode(IntEnum):
    """Error codes carried in the length field of a GO_AWAY frame."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """A decoded header.

    ``frame_type`` stays a plain ``int`` subclass (:class:`FrameType`) and
    ``flags`` a plain ``int`` so that unknown flag bits survive a round
    trip: the spec reserves them and receivers ignore them.
    """

    frame_type: FrameType
    flags: int
    stream_id: int
    length: int

    def encode(self) -> bytes:
        """The twelve bytes of this header."""
        return encode_header(self.frame_type, self.flags, self.stream_id, self.length)


def encode_header(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    """Encode one header.

    Raises:
        LocalProtocolError: a field does not fit its width.
    """
    if not 0 <= frame_type <= 3:
        raise LocalProtocolError(f"unknown yamux frame type {frame_type}")
    if not 0 <= flags <= 0xFFFF:
        raise LocalProtocolError(f"yamux flags out of range: {flags}")
    if not 0 <= stream_id <= MAX_UINT32 or not 0 <= length <= MAX_UINT32:
        raise LocalProtocolError("yamux stream id or length out of range")
    return HEADER.pack(VERSION, frame_type, flags, stream_id, length)


def decode_header(data: bytes | bytearray | memoryview, offset: int = 0) -> FrameHeader:
    """Decode the header at ``data[offset:offset + 12]``.

    Raises:
        DecodeError: fewer than twelve bytes, a version other than 0, or a
            frame type this version does not define. The error's hint is
            the GoAway protocol-error code, ready to answer with.
    """
    if len(data) - offset < HEADER_SIZE:
        raise DecodeError("truncated yamux header", hint=GoAwayCode.PROTOCOL_ERROR)
    version, frame_type, flags, stream_id, length = HEADER.unpack_from(data, offset)
    if version != VERSION:
        raise DecodeError(f"unsupported yamux version {version}", hint=GoAwayCode.PROTOCOL_ERROR)
    if frame_type > 3:
        raise DecodeError(f"unknown yamux frame type {frame_type}", hint=GoAwayCode.PROTOCOL_ERROR)
    return FrameHeader(FrameType(frame_type), flags, stream_id, length)
