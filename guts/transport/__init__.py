"""Transports: connections to and from multiaddrs.

One interface, :class:`Transport` (``can_dial``, ``can_listen``, ``dial``,
``serve``), and three implementations that hand over raw byte streams
(:class:`RawConnection`): :class:`TcpTransport`, :class:`WebSocketTransport`
and the in-process :class:`MemoryTransport`. A transport that secures and
multiplexes its connections itself hands over an
:class:`UpgradedConnection`.
Importing this package stays cheap: the WebSocket transport imports
wsproto only on its first connection.
"""

from guts.transport._base import ConnectionHandler, RawConnection, Transport, UpgradedConnection
from guts.transport.memory import (
    MemoryConnection,
    MemoryLink,
    MemoryNetwork,
    MemoryTransport,
    memory_connection_pair,
)
from guts.transport.tcp import TcpConnection, TcpTransport
from guts.transport.websocket import WebSocketConfig, WebSocketConnection, WebSocketTransport

__all__ = [
    "ConnectionHandler",
    "MemoryConnection",
    "MemoryLink",
    "MemoryNetwork",
    "MemoryTransport",
    "RawConnection",
    "TcpConnection",
    "TcpTransport",
    "Transport",
    "UpgradedConnection",
    "WebSocketConfig",
    "WebSocketConnection",
    "WebSocketTransport",
    "memory_connection_pair",
]
