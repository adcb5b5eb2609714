"""multistream-select 1.0, sans-IO.

Theory of operation
-------------------
Each side speaks in length-prefixed lines ending in ``\\n``. The dialer
sends the header ``/multistream/1.0.0`` and its first choice in one
write (as js-libp2p and go-libp2p do) and reads the listener's header and
answer: the protocol echoed back means yes, ``na`` means try the next
choice. The listener answers the header with its own header, each
protocol with the same line or ``na``, and ``ls`` with the list of what
it speaks.

Both roles are bounded: a line may be at most :data:`MAX_LINE` bytes and
a listener refuses after :data:`MAX_ATTEMPTS` unknown protocols, so a
peer cannot keep a stream busy forever. Answers count too: a listener
answers ``ls`` at most :data:`MAX_LS` times per stream, each answer at
most :data:`MAX_LISTING` bytes (the protocols that fit), and refuses the
stream at the next one. Without that, a peer that writes ``ls`` and never
reads made us queue about 1,400 listings per 4 KiB it sent. So what one
negotiation queues for the peer stays under about 20 KiB, and what it
holds of the peer's bytes under :data:`MAX_LINE` plus one read.

How many negotiations a connection may hold at once is the caller's to
bound: :class:`NegotiationLimit` is the counter it consults (a yamux
connection carries one for the streams its peer opens).

The cores never block and never import trio; :mod:`guts.wire._negotiate`
drives them over a stream.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from enum import Enum

from guts.errors import DecodeError, LocalProtocolError, NegotiationError, RemoteProtocolError
from guts.wire._framing import LengthPrefixedDecoder, encode_length_prefixed

__all__ = [
    "MULTISTREAM_PROTOCOL",
    "MAX_LINE",
    "MAX_ATTEMPTS",
    "MAX_LS",
    "MAX_LISTING",
    "DialerNegotiation",
    "NegotiationLimit",
    "ListenerNegotiation",
    "encode_line",
]

MULTISTREAM_PROTOCOL = "/multistream/1.0.0"
#: Longest line accepted (protocol ids are short; the spec's ls answers are
#: the only long messages and we never ask for them).
MAX_LINE = 1024
#: How many protocols a listener answers ``na`` to before giving up.
MAX_ATTEMPTS = 32
#: How many ``ls`` a listener answers on one stream before refusing it.
MAX_LS = 4
#: Largest ``ls`` answer, in bytes: protocols past it are left out.
MAX_LISTING = 4096
#: Streams in negotiation a :class:`NegotiationLimit` allows by default.
MAX_NEGOTIATING = 64

_HEADER_LINE = b"/multistream/1.0.0\n"
_NA = "na"
_LS = "ls"


def encode_line(text: str) -> bytes:
    """Frame one multistream line."""
    raw = text.encode() + b"\n"
    if len(raw) > MAX_LINE:
        raise LocalProtocolError(f"protocol id too long ({len(raw)} bytes)")
    return encode_length_prefixed(raw)


_HEADER = encode_line(MULTISTREAM_PROTOCOL)
_NA_MSG = encode_line(_NA)


def _decode_line(payload: bytes) -> str:
    if not payload.endswith(b"\n"):
        raise DecodeError("multistream line does not end with a newline")
    try:
        return payload[:-1].decode()
    except UnicodeDecodeError:
        raise DecodeError("multistream line is not UTF-8") from None


class _State(Enum):
    AWAIT_HEADER = "await-header"
    AWAIT_ANSWER = "await-answer"
    DONE = "done"
    FAILED = "failed"


class DialerNegotiation:
    """The dialer's side: proposes protocols in order until one is accepted.

    Args:
        protocols: the protocols to propose, most preferred first.
    """

    def __init__(self, protocols: Sequence[str]) -> None:
        if not protocols:
            raise LocalProtocolError("no protocol to propose")
        self._protocols = list(protocols)
        self._index = 0
        self._decoder = LengthPrefixedDecoder(MAX_LINE)
        self._out = bytearray(_HEADER + encode_line(self._protocols[0]))
        self._state = _State.AWAIT_HEADER
        self.protocol: str | None = None

    @property
    def done(self) -> bool:
        """True once the listener accepted :attr:`protocol`."""
        return self._state is _State.DONE

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed the listener's bytes.

        Raises:
            NegotiationError: the listener refused every protocol.
            RemoteProtocolError: the listener sent something out of protocol.
        """
        if self._state in (_State.DONE, _State.FAILED):
            raise LocalProtocolError("negotiation already finished")
        self._decoder.receive_data(data)
        while self._state is not _State.DONE:
            payload = self._decoder.next_message()
            if payload is None:
                return
            line = _decode_line(payload)
            if self._state is _State.AWAIT_HEADER:
                if line != MULTISTREAM_PROTOCOL:
                    self._state = _State.FAILED
                    raise RemoteProtocolError(f"unexpected multistream header {line[:64]!r}")
                self._state = _State.AWAIT_ANSWER
            elif line == self._protocols[self._index]:
                self.protocol = line
                self._state = _State.DONE
            elif line == _NA:
                self._index += 1
                if self._index == len(self._protocols):
                    self._state = _State.FAILED
                    raise NegotiationError(f"remote supports none of {self._protocols}")
                self._out += encode_line(self._protocols[self._index])
            else:
                self._state = _State.FAILED
                raise RemoteProtocolError(f"unexpected multistream answer {line[:64]!r}")

    def unused_data(self) -> bytes:
        """Bytes that followed the accepting answer: the protocol's first data."""
        return self._decoder.unused_data()


class ListenerNegotiation:
    """The listener's side: accepts the first proposal it supports.

    Args:
        supported: protocols we speak (any container; a dict of handlers works).
        listing: what to answer ``ls`` with; defaults to ``supported`` if it
            is iterable.
    """

    def __init__(self, supported: Container[str], listing: Iterable[str] | None = None) -> None:
        self._supported = supported
        self._listing = listing
        self._decoder = LengthPrefixedDecoder(MAX_LINE)
        self._out = bytearray()
        self._state = _State.AWAIT_HEADER
        self._refused = 0
        self._listed = 0
        self.protocol: str | None = None

    @property
    def done(self) -> bool:
        """True once a protocol was agreed; :attr:`protocol` names it."""
        return self._state is _State.DONE

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed the dialer's bytes.

        Raises:
            NegotiationError: the dialer tried too many unknown protocols,
                or asked ``ls`` more than :data:`MAX_LS` times.
            RemoteProtocolError: the dialer sent something out of protocol.
        """
        if self._state in (_State.DONE, _State.FAILED):
            raise LocalProtocolError("negotiation already finished")
        self._decoder.receive_data(data)
        while self._state is not _State.DONE:
            payload = self._decoder.next_message()
            if payload is None:
                return
            line = _decode_line(payload)
            if self._state is _State.AWAIT_HEADER:
                if line != MULTISTREAM_PROTOCOL:
                    self._state = _State.FAILED
                    raise RemoteProtocolError(f"unexpected multistream header {line[:64]!r}")
                self._out += _HEADER
                self._state = _State.AWAIT_ANSWER
            elif line == _LS:
                self._listed += 1
                if self._listed > MAX_LS:
                    self._state = _State.FAILED
                    raise NegotiationError(f"remote asked ls more than {MAX_LS} times")
                self._out += self._encode_listing()
            elif line in self._supported:
                self._out += encode_line(line)
                self.protocol = line
                self._state = _State.DONE
            else:
                self._refused += 1
                if self._refused > MAX_ATTEMPTS:
                    self._state = _State.FAILED
                    raise NegotiationError(f"remote proposed more than {MAX_ATTEMPTS} unknown protocols")
                self._out += _NA_MSG

    def _encode_listing(self) -> bytes:
        listing = self._listing
        if listing is None:
            listing = self._supported if isinstance(self._supported, Iterable) else ()
        body = bytearray()
        for protocol in listing:
            item = encode_length_prefixed(protocol.encode() + b"\n")
            if len(body) + len(item) + 1 > MAX_LISTING:
                break
            body += item
        body += b"\n"
        return encode_length_prefixed(bytes(body))

    def unused_data(self) -> bytes:
        """Bytes that followed the accepted proposal: the protocol's first data."""
        return self._decoder.unused_data()


class NegotiationLimit:
    """Counts the streams in negotiation on one connection, up to a cap.

    A peer that opens streams and never finishes negotiating them holds a
    task, a stream and its buffers for each, until the negotiation times
    out: 10 connections with 1,024 such streams each cost 55 MiB. The
    listener takes a slot before reading (:meth:`try_acquire`) and gives
    it back when the negotiation ends, either way (:meth:`release`); a
    stream that finds no slot is refused at once, before anything is read.

    Args:
        max_pending: negotiations allowed at once.
    """

    __slots__ = ("max_pending", "pending", "refused")

    def __init__(self, max_pending: int = MAX_NEGOTIATING) -> None:
        if max_pending < 1:
            raise LocalProtocolError("max_pending must be at least 1")
        self.max_pending = max_pending
        self.pending = 0
        #: Streams refused for want of a slot, over the counter's life.
        self.refused = 0

    def try_acquire(self) -> bool:
        """Take a slot; False (and counted) when all are taken."""
        if self.pending >= self.max_pending:
            self.refused += 1
            return False
        self.pending += 1
        return True

    def release(self) -> None:
        """Give back a slot taken by :meth:`try_acquire`."""
        if self.pending <= 0:
            raise LocalProtocolError("release() without a slot taken")
        self.pending -= 1
