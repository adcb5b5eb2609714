"""Unsigned varints (multiformats/unsigned-varint).

libp2p caps varints at 9 bytes (63 bits) and requires the minimal
encoding; both rules are enforced here because every length prefix read
from the network passes through :func:`decode_uvarint`.
"""

from __future__ import annotations

from guts.errors import DecodeError

__all__ = ["MAX_VARINT_BYTES", "encode_uvarint", "decode_uvarint", "NeedMoreData"]

#: The spec's limit: 9 bytes, 63 bits of value.
MAX_VARINT_BYTES = 9

_SMALL = [bytes((i,)) for i in range(128)]


class NeedMoreData(DecodeError):
    """The buffer ends inside a varint; feed more bytes and try again.

    A :class:`~guts.errors.DecodeError` so that a caller holding a complete
    message (a multiaddr, a protobuf field) can treat truncation like any
    other malformed input, while a streaming decoder catches it first and
    waits for more bytes.
    """

    def __init__(self, message: str = "truncated varint") -> None:
        super().__init__(message)


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer below 2**63 as an unsigned varint."""
    if 0 <= value < 128:
        return _SMALL[value]
    if value < 0 or value >= 1 << 63:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """Decode one varint from ``data`` at ``pos``.

    Returns:
        ``(value, new_pos)``.

    Raises:
        NeedMoreData: the buffer ends before the varint does.
        DecodeError: the varint is longer than 9 bytes or not minimal.
    """
    n = len(data)
    if pos < n:
        b = data[pos]
        if b < 0x80:
            return b, pos + 1
    value = 0
    shift = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= n:
            raise NeedMoreData
        b = data[pos + i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 and i > 0:
                raise DecodeError("varint is not minimally encoded")
            return value, pos + i + 1
        shift += 7
    raise DecodeError("varint longer than 9 bytes")
