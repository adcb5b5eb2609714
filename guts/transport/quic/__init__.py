"""QUIC v1 (``/quic-v1``): a transport that brings its own security (libp2p
TLS 1.3 inside the QUIC handshake) and its own streams.

aioquic is the QUIC state machine (sans-IO); :mod:`._connection` holds it
to libp2p's TLS profile and to credit flow control, :mod:`._endpoint`
routes a UDP socket's datagrams by connection id, :mod:`._muxer` drives
one connection on Trio as a :class:`guts.mux.MuxedConnection`,
:mod:`._stream` is its :class:`guts.mux.MuxedStream`, and
:mod:`._transport` dials and serves.
"""

from guts.transport.quic._muxer import QuicMuxedConnection
from guts.transport.quic._stream import QuicStream
from guts.transport.quic._transport import QuicConfig, QuicConnection, QuicTransport, quic_target

__all__ = ["QuicConfig", "QuicConnection", "QuicMuxedConnection", "QuicStream", "QuicTransport", "quic_target"]
