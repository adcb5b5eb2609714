"""Unsigned-varint length-prefixed framing, sans-IO.

Most libp2p protocols (multistream-select, identify, kad-dht, gossipsub)
send messages as ``<uvarint length><payload>``. :class:`LengthPrefixedDecoder`
accumulates bytes and yields whole payloads, refusing any length above
``max_size`` *before* buffering it, so a peer cannot make us hold more than
one maximal message.
"""

from __future__ import annotations

from guts.errors import DecodeError
from guts.wire._varint import NeedMoreData, decode_uvarint, encode_uvarint

__all__ = ["LengthPrefixedDecoder", "encode_length_prefixed"]


def encode_length_prefixed(payload: bytes) -> bytes:
    """Return ``payload`` behind its uvarint length."""
    return encode_uvarint(len(payload)) + payload


class LengthPrefixedDecoder:
    """Splits a byte stream into length-prefixed messages.

    Args:
        max_size: the largest payload accepted; a longer declared length
            raises :class:`~guts.errors.DecodeError` at once.
    """

    __slots__ = ("_buf", "max_size")

    def __init__(self, max_size: int) -> None:
        self._buf = bytearray()
        self.max_size = max_size

    def receive_data(self, data: bytes | bytearray) -> None:
        """Append bytes read from the network."""
        self._buf += data

    def next_message(self) -> bytes | None:
        """Return the next complete payload, or ``None`` if more bytes are needed."""
        buf = self._buf
        if not buf:
            return None
        try:
            length, pos = decode_uvarint(buf)
        except NeedMoreData:
            return None
        if length > self.max_size:
            raise DecodeError(f"message of {length} bytes exceeds the limit of {self.max_size}")
        end = pos + length
        if len(buf) < end:
            return None
        payload = bytes(buf[pos:end])
        del buf[:end]
        return payload

    def unused_data(self) -> bytes:
        """Bytes received beyond the last message returned (and clears them)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    @property
    def buffered(self) -> int:
        """How many bytes are waiting."""
        return len(self._buf)
