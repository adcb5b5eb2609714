"""Layer 1 of the stack: varints, length-prefixed framing, multistream-select."""

from guts.wire._framing import LengthPrefixedDecoder, encode_length_prefixed
from guts.wire._multistream import (
    MULTISTREAM_PROTOCOL,
    DialerNegotiation,
    ListenerNegotiation,
    NegotiationLimit,
    encode_line,
)
from guts.wire._messages import MessageStream
from guts.wire._negotiate import NegotiatedStream, accept_protocol, select_protocol
from guts.wire._varint import MAX_VARINT_BYTES, NeedMoreData, decode_uvarint, encode_uvarint

__all__ = [
    "MAX_VARINT_BYTES",
    "MULTISTREAM_PROTOCOL",
    "MessageStream",
    "DialerNegotiation",
    "LengthPrefixedDecoder",
    "ListenerNegotiation",
    "NeedMoreData",
    "NegotiatedStream",
    "NegotiationLimit",
    "accept_protocol",
    "decode_uvarint",
    "encode_length_prefixed",
    "encode_line",
    "encode_uvarint",
    "select_protocol",
]
