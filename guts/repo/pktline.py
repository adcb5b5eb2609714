"""git's pkt-line framing and side-band multiplexing, sans-IO.

Every byte git speaks on the wire (protocol v2 requests and responses,
the pack a fetch returns) is framed as pkt-lines (gitprotocol-common(5)):
four hex digits giving the length of the packet *including* those four
digits, then the payload. Three lengths are reserved: ``0000`` (flush,
end of a message), ``0001`` (delimiter, between sections of a v2
message) and ``0002`` (response end, for stateless transports).

Theory of operation: :class:`PktLineDecoder` works like
:class:`guts.wire.LengthPrefixedDecoder`. Bytes go in with
:meth:`~PktLineDecoder.receive_data`; :meth:`~PktLineDecoder.next_packet`
returns one packet at a time, or ``None`` when it needs more bytes. A
declared length is judged from its four digits alone, before any payload
is buffered, so a peer can make us hold at most one maximal packet beyond
what it already sent. Consumed bytes are dropped with one front deletion
per :meth:`~PktLineDecoder.receive_data`, not one per packet, so a pack of
hundreds of MiB passes in time linear in its size.

What we accept, and where git differs (checked against git 2.39):

* Length digits may be upper or lower case: git reads both (``hexval``),
  although it writes lower case only, as we do.
* ``0004``, an empty data packet, decodes as ``DataPacket(b"")``. The spec
  says implementations SHOULD NOT send it, and git accepts it, so we
  accept it and never send it.
* ``0003`` is refused, as git refuses it.
* A length above 65520 (``fff0``) is refused. git's reader keeps three
  bytes of slack and accepts up to ``fff3``; no git sends that, and the
  spec says MUST NOT, so we hold the line at the documented limit.

Side-band (gitprotocol-capabilities(5), ``side-band-64k``): in a protocol
v2 fetch, every data packet of the ``packfile`` section starts with one
byte naming its band: 1 pack data, 2 progress text, 3 a fatal error just
before the stream aborts. :func:`demux_sideband` splits that byte off.
The capabilities document says a band carries "up to 65519 bytes of
data", but that is 65520 less the band byte alone; the real limit, the
one git's ``send_sideband`` keeps, is 65520 - 4 - 1 = 65515.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

from guts.errors import DecodeError, LocalProtocolError

__all__ = [
    "MAX_PKT_LEN",
    "MAX_PAYLOAD",
    "MAX_SIDEBAND_DATA",
    "FLUSH_PKT",
    "DELIM_PKT",
    "RESPONSE_END_PKT",
    "DataPacket",
    "FlushPacket",
    "DelimPacket",
    "ResponseEndPacket",
    "Packet",
    "FLUSH",
    "DELIM",
    "RESPONSE_END",
    "PktLineDecoder",
    "ResponseTracker",
    "encode_data",
    "encode_line",
    "encode_packet",
    "encode_packets",
    "Band",
    "SidebandPacket",
    "demux_sideband",
    "encode_sideband",
]

#: The longest pkt-line, length digits included (git's LARGE_PACKET_MAX).
MAX_PKT_LEN: Final = 65520
#: The longest payload of one data packet.
MAX_PAYLOAD: Final = MAX_PKT_LEN - 4
#: The most data one side-band-64k packet carries after its band byte.
MAX_SIDEBAND_DATA: Final = MAX_PAYLOAD - 1

#: The wire form of the three special packets.
FLUSH_PKT: Final = b"0000"
DELIM_PKT: Final = b"0001"
RESPONSE_END_PKT: Final = b"0002"


@dataclass(frozen=True, slots=True)
class DataPacket:
    """A packet that carries bytes (possibly none: ``0004``).

    Attributes:
        payload: the bytes after the four length digits, trailing LF
            included if the sender wrote one (see :meth:`line`).
    """

    payload: bytes

    def line(self) -> bytes:
        """The payload without one trailing LF.

        The spec tells receivers to treat a text line the same with or
        without its LF, so callers comparing lines should use this rather
        than the raw payload.
        """
        payload = self.payload
        return payload[:-1] if payload.endswith(b"\n") else payload


@dataclass(frozen=True, slots=True)
class FlushPacket:
    """``0000``: the end of a message (v2) or of a list (v1)."""


@dataclass(frozen=True, slots=True)
class DelimPacket:
    """``0001``: separates the sections of a protocol v2 message."""


@dataclass(frozen=True, slots=True)
class ResponseEndPacket:
    """``0002``: the end of a response on a stateless connection."""


Packet: TypeAlias = DataPacket | FlushPacket | DelimPacket | ResponseEndPacket

#: The special packets carry nothing, so one instance of each serves all.
FLUSH: Final = FlushPacket()
DELIM: Final = DelimPacket()
RESPONSE_END: Final = ResponseEndPacket()

_SPECIAL: Final[tuple[Packet, ...]] = (FLUSH, DELIM, RESPONSE_END)

# Digit values for the length, indexed by byte. A byte that is not a hex
# digit maps to a value with bit 16 set, which survives the shifts and ORs
# below and so marks the whole length invalid with one comparison.
_BAD: Final = 1 << 16
_HEXVAL: Final[tuple[int, ...]] = tuple(
    int(chr(b), 16) if chr(b) in "0123456789abcdefABCDEF" else _BAD for b in range(256)
)


class PktLineDecoder:
    """Splits a byte stream into pkt-lines.

    The buffer holds the bytes not yet returned as packets, plus, until the
    next :meth:`receive_data`, those already returned (dropping them there
    costs one deletion per read instead of one per packet). A caller that
    drains :meth:`next_packet` until ``None`` after each read therefore
    never holds more than one partial packet (under :data:`MAX_PKT_LEN`
    bytes) plus the bytes of that read.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes read from the stream."""
        buf = self._buf
        if self._pos:
            del buf[: self._pos]
            self._pos = 0
        buf += data

    def next_packet(self) -> Packet | None:
        """Return the next complete packet, or ``None`` if more bytes are needed.

        Raises:
            DecodeError: the length digits are not hex, or declare a length
                of 3 or above :data:`MAX_PKT_LEN`. The stream cannot be
                resynchronised after that; the caller should hang up.
        """
        buf = self._buf
        pos = self._pos
        start = pos + 4
        if len(buf) < start:
            return None
        t = _HEXVAL
        length = (t[buf[pos]] << 12) | (t[buf[pos + 1]] << 8) | (t[buf[pos + 2]] << 4) | t[buf[pos + 3]]
        if length < 4:
            if length == 3:
                raise DecodeError("pkt-line length 0003 is reserved")
            self._pos = start
            return _SPECIAL[length]
        if length > MAX_PKT_LEN:
            if length >= _BAD:
                raise DecodeError(f"pkt-line length {bytes(buf[pos:start])!r} is not four hex digits")
            raise DecodeError(f"pkt-line of {length} bytes exceeds the limit of {MAX_PKT_LEN}")
        end = pos + length
        if len(buf) < end:
            return None
        self._pos = end
        with memoryview(buf) as view:
            return DataPacket(view[start:end].tobytes())

    def end_of_stream(self) -> None:
        """Check that the stream ended between packets.

        Call this when the transport reports EOF.

        Raises:
            DecodeError: bytes of an unfinished packet are waiting.
        """
        if self.buffered:
            raise DecodeError(f"stream ended inside a pkt-line ({self.buffered} bytes left)")

    def unused_data(self) -> bytes:
        """Bytes received beyond the last packet returned (and clears them).

        For a protocol that stops speaking pkt-lines mid-stream (the v1
        pack that follows a ``NAK`` without side-band, for one).
        """
        data = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return data

    @property
    def buffered(self) -> int:
        """How many received bytes are waiting to be returned as packets."""
        return len(self._buf) - self._pos


def encode_data(payload: bytes | bytearray | memoryview) -> bytes:
    """Return ``payload`` as one data packet.

    Raises:
        LocalProtocolError: the payload is empty (git's spec says not to
            send ``0004``, and a receiver that cannot tell it from a flush
            would misread it) or longer than :data:`MAX_PAYLOAD`.
    """
    n = len(payload)
    if not 0 < n <= MAX_PAYLOAD:
        raise LocalProtocolError(f"a pkt-line payload must be 1 to {MAX_PAYLOAD} bytes, not {n}")
    return b"%04x" % (n + 4) + payload


def encode_line(line: str | bytes) -> bytes:
    """Return one text line as a data packet, with the trailing LF git expects.

    ``line`` is given without its LF; text is encoded as UTF-8.
    """
    raw = line.encode() if isinstance(line, str) else line
    return encode_data(raw + b"\n")


def encode_packet(packet: Packet) -> bytes:
    """Return the wire form of one packet."""
    if isinstance(packet, DataPacket):
        return encode_data(packet.payload)
    if isinstance(packet, FlushPacket):
        return FLUSH_PKT
    if isinstance(packet, DelimPacket):
        return DELIM_PKT
    return RESPONSE_END_PKT


def encode_packets(packets: Iterable[Packet]) -> bytes:
    """Return the wire form of several packets, in order."""
    return b"".join(encode_packet(p) for p in packets)


class Band(enum.IntEnum):
    """The side-band channels of git's pack transfer."""

    #: Bytes of the pack itself.
    PACK = 1
    #: Progress text for the person waiting (``\\r``-terminated updates).
    PROGRESS = 2
    #: A fatal error message; the stream ends after it.
    ERROR = 3


_BANDS: Final[dict[int, Band]] = {b.value: b for b in Band}


@dataclass(frozen=True, slots=True)
class SidebandPacket:
    """One side-band packet, split into its band and its data.

    Attributes:
        band: the channel.
        data: what the channel carries; may be empty (git sends ``0005\\x01``
            and ``0005\\x02`` as keep-alives).
    """

    band: Band
    data: bytes


def demux_sideband(payload: bytes) -> SidebandPacket:
    """Split the band byte off a data packet's payload.

    Args:
        payload: :attr:`DataPacket.payload` of a packet inside a side-band
            stream (the ``packfile`` section of a v2 fetch response).
            Flush and delimiter packets end or frame that stream and are
            the caller's to handle.

    Raises:
        DecodeError: the payload is empty (no band byte) or names a band
            other than 1, 2 or 3.
    """
    if not payload:
        raise DecodeError("side-band packet without a band byte")
    band = _BANDS.get(payload[0])
    if band is None:
        raise DecodeError(f"side-band packet on unknown band {payload[0]}")
    return SidebandPacket(band, payload[1:])


def encode_sideband(band: Band, data: bytes | bytearray | memoryview) -> bytes:
    """Return ``data`` on ``band`` as side-band-64k packets.

    Data longer than :data:`MAX_SIDEBAND_DATA` is split over several
    packets; empty data makes one empty packet (a keep-alive).
    """
    code = bytes((Band(band).value,))
    view = memoryview(data).cast("B")
    if not view:
        return b"0005" + code
    out = bytearray()
    for i in range(0, len(view), MAX_SIDEBAND_DATA):
        chunk = view[i : i + MAX_SIDEBAND_DATA]
        out += b"%04x" % (len(chunk) + 5)
        out += code
        out += chunk
    return bytes(out)


def _length(digits: bytes) -> int:
    """The value of four hex digits, or -1."""
    if len(digits) != 4 or any(c not in _HEX for c in digits):
        return -1
    return int(digits, 16)


_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


class ResponseTracker:
    """Follows one stateless response as it passes, packet by packet (a
    protocol v2 response relayed to git by a remote helper, which must add
    ``0002`` after it, and only after a whole one).

    Only the four length digits of each packet are read; payloads are
    skipped, not kept, so a pack of any size passes in constant memory.
    :meth:`end` gives the ``0002`` to write after the response, and only
    if the response ended on a flush at a packet boundary.
    """

    __slots__ = ("_header", "_left", "_last_flush", "size")

    def __init__(self) -> None:
        self._header = bytearray()
        self._left = 0
        self._last_flush = False
        #: Bytes of the response so far.
        self.size = 0

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Follow the next bytes of the response.

        Raises:
            DecodeError: a length that is not four hex digits, or 0003, or
                above the pkt-line limit.
        """
        view = memoryview(data).cast("B")
        self.size += len(view)
        i, end = 0, len(view)
        while i < end:
            if self._left:
                step = min(self._left, end - i)
                self._left -= step
                i += step
                continue
            take = min(4 - len(self._header), end - i)
            self._header += view[i : i + take]
            i += take
            if len(self._header) < 4:
                break
            digits = bytes(self._header)
            self._header.clear()
            length = _length(digits)
            if length < 0 or length == 3 or length > MAX_PKT_LEN:
                raise DecodeError(f"a response packet of length {digits!r}")
            self._last_flush = length == 0
            self._left = max(length - 4, 0)

    def end(self) -> bytes:
        """The response-end packet, once the response ended cleanly.

        Raises:
            DecodeError: the response stopped inside a packet, or its last
                packet was not a flush (the server died or was cut off).
        """
        if self._header or self._left:
            raise DecodeError("the response ended inside a packet")
        if not self._last_flush:
            raise DecodeError("the response did not end with a flush packet")
        return RESPONSE_END_PKT
