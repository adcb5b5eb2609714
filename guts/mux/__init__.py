"""Layer 2 of the stack: stream multiplexers (yamux), and what the host
needs of any multiplexed connection (:class:`MuxedConnection`,
:class:`MuxedStream`), yamux's or a transport's own (QUIC)."""

from guts.mux._api import MuxedConnection, MuxedStream

__all__ = ["MuxedConnection", "MuxedStream"]
