"""yamux ``/yamux/1.0.0``: the stream multiplexer js-libp2p and go-libp2p use.

:class:`YamuxSession` is the sans-IO core (bytes in, events and bytes
out); :class:`YamuxConnection` drives it over a trio stream and hands out
:class:`YamuxStream` objects, which are :class:`trio.abc.HalfCloseableStream`.
"""

from guts.mux.yamux._config import INITIAL_WINDOW, YamuxConfig
from guts.mux.yamux._events import (
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcknowledged,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from guts.mux.yamux._frames import (
    HEADER_SIZE,
    Flag,
    FrameHeader,
    FrameType,
    GoAwayCode,
    decode_header,
    encode_header,
)
from guts.mux.yamux._session import YamuxSession
from guts.mux.yamux._connection import YamuxConnection
from guts.mux.yamux._stream import YamuxStream, YamuxStreamReset

#: Protocol id negotiated by multistream-select or Noise extensions.
PROTOCOL_ID = "/yamux/1.0.0"

__all__ = [
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "PROTOCOL_ID",
    "DataReceived",
    "Event",
    "Flag",
    "FrameHeader",
    "FrameType",
    "GoAwayCode",
    "GoAwayReceived",
    "PingAcknowledged",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "WindowUpdated",
    "YamuxConfig",
    "YamuxConnection",
    "YamuxSession",
    "YamuxStream",
    "YamuxStreamReset",
    "decode_header",
    "encode_header",
]
