"""Transports: raw byte streams to and from multiaddrs.

One interface, :class:`Transport` (``can_dial``, ``can_listen``, ``dial``,
``serve``), and three implementations: :class:`TcpTransport`,
:class:`WebSocketTransport` and the in-process :class:`MemoryTransport`.
Importing this package stays cheap: the WebSocket transport imports
wsproto only on its first connection.
"""

from guts.transport._base import ConnectionHandler, RawConnection, Transport
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
    "WebSocketConfig",
    "WebSocketConnection",
    "WebSocketTransport",
    "memory_connection_pair",
]
