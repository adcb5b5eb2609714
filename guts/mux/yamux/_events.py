"""Events the yamux session core reports, in the past tense.

:meth:`YamuxSession.receive_data` turns bytes from the peer into a list of
these. They are plain frozen records: the core has already updated its
own state when it returns them, so an adapter only has to route them to
the right stream object.

:class:`StreamReset` here is the *event* "the peer reset stream n"; the
error raised to applications is :class:`guts.errors.StreamReset` (and its
trio-flavoured subclass in :mod:`guts.mux.yamux._stream`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Event",
    "StreamOpened",
    "DataReceived",
    "StreamEnded",
    "StreamReset",
    "WindowUpdated",
    "PingAcknowledged",
    "GoAwayReceived",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every yamux event."""


@dataclass(frozen=True, slots=True)
class StreamOpened(Event):
    """The peer opened a stream (SYN) and we accepted it (ACK queued)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """Payload bytes arrived on a stream.

    One DATA frame may be reported as several events when it arrives in
    pieces: the core hands bytes on as soon as they are there instead of
    buffering whole frames. The bytes count against the receive window
    until the application consumes them and the adapter calls
    :meth:`YamuxSession.acknowledge_received`.
    """

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded(Event):
    """The peer half-closed the stream (FIN): no more data will arrive."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset(Event):
    """The peer reset the stream (RST), or refused a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class WindowUpdated(Event):
    """The peer gave us ``delta`` more bytes of send credit on a stream."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged(Event):
    """The peer answered one of our pings; ``opaque`` is what we sent."""

    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived(Event):
    """The peer is shutting the session down and takes no new streams.

    ``code`` is a :class:`~guts.mux.yamux.GoAwayCode` value when the peer
    follows the spec, but any 32-bit value is reported as sent.
    """

    code: int
