"""The transport interface and the accept loop every transport shares.

A transport turns a multiaddr into a connection: :meth:`Transport.dial`
connects out, :meth:`Transport.serve` accepts in. Most hand over a raw,
unauthenticated byte stream (:class:`RawConnection`: TCP, WebSocket,
memory); security and multiplexing are layered on top by the upgrader, so
those know nothing about peers, and a trailing ``/p2p/<id>`` on a dialled
address is checked by the upgrader after the handshake. A transport that
brings its own security and streams (QUIC: TLS 1.3 is part of its
handshake, its streams are its own) hands over an
:class:`UpgradedConnection` instead, already authenticated and
multiplexed, and checks the ``/p2p/<id>`` during its handshake.

Why ``serve`` and not ``listen() -> trio.abc.Listener``: a WebSocket
connection needs an HTTP upgrade handshake after ``accept``, and doing
that in the accept loop would let one slow client stall every other.
``serve`` owns the listening sockets *and* one task per connection, in
the shape of ``trio.serve_tcp``, so the host simply runs
``await nursery.start(transport.serve, addr, handler)`` and cancels that
nursery to stop.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar

import trio

from guts.multiaddr import Component, Multiaddr
from guts.mux import MuxedConnection
from guts.security import SecureChannel

__all__ = [
    "ConnectionHandler",
    "RawConnection",
    "Transport",
    "UpgradedConnection",
]

logger = logging.getLogger("guts.transport")

# Errors from accept() that mean "out of resources now", not "listener dead";
# trio's serve_listeners treats the same set the same way.
_ACCEPT_CAPACITY_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EMFILE", "ENFILE", "ENOMEM", "ENOBUFS")
    if hasattr(errno, name)
)
_ACCEPT_BACKOFF = 0.1


class RawConnection(trio.abc.Stream):
    """A trio stream that knows the multiaddrs of both of its ends.

    Transports return subclasses; TCP and memory connections are also
    :class:`trio.abc.HalfCloseableStream`, WebSocket ones are not.

    Attributes:
        local_addr: our end, e.g. ``/ip4/127.0.0.1/tcp/4001``.
        remote_addr: the other end, as seen by us (for an inbound TCP
            connection, the client's ephemeral port).
    """

    __slots__ = ()

    local_addr: Multiaddr
    remote_addr: Multiaddr


class UpgradedConnection(trio.abc.AsyncResource):
    """A connection its transport authenticated and multiplexed itself.

    Attributes:
        local_addr, remote_addr: as for :class:`RawConnection`.
        secure: who the peer is.
        muxer: its streams; the host runs it as it runs yamux.

    Closing it closes the connection (gracefully, through the muxer).
    """

    __slots__ = ()

    local_addr: Multiaddr
    remote_addr: Multiaddr
    secure: SecureChannel
    muxer: MuxedConnection

    async def aclose(self) -> None:
        await self.muxer.aclose()


ConnectionHandler: TypeAlias = Callable[[RawConnection | UpgradedConnection], Awaitable[None]]


class Transport(Protocol):
    """What the host needs from a transport.

    Callers apply their own deadline (``trio.fail_after``) around ``dial``.
    """

    def can_dial(self, addr: Multiaddr) -> bool:
        """Whether :meth:`dial` understands ``addr`` (a trailing ``/p2p`` is allowed)."""
        ...

    def can_listen(self, addr: Multiaddr) -> bool:
        """Whether :meth:`serve` understands ``addr``."""
        ...

    async def dial(self, addr: Multiaddr) -> RawConnection | UpgradedConnection:
        """Connect to ``addr``.

        Raises:
            guts.errors.DialError: with the address in the message and the
                cause (refused, unreachable, DNS failure...) chained.
        """
        ...

    async def serve(
        self,
        addr: Multiaddr,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``addr`` and run ``handler(conn)`` for each inbound connection.

        Binds first, then reports the bound addresses with
        ``task_status.started(addrs)`` (port 0 replaced by the real port,
        one entry per bound socket), then accepts until cancelled.
        Each handler runs in its own task inside ``serve``; **the
        connection is closed when its handler returns or raises**, so a
        handler keeps the connection by not returning. An exception from
        a handler is logged on ``guts.transport`` and never stops the
        listener. Cancelling ``serve`` closes the listener and cancels
        every running handler.

        Raises:
            OSError: if binding fails (address in use, not local...).
        """
        ...


StreamT = TypeVar("StreamT", bound=trio.abc.AsyncResource)


async def run_handler(handler: ConnectionHandler, conn: RawConnection | UpgradedConnection) -> None:
    """Run ``handler`` on ``conn``, log its failure, always close ``conn``."""
    try:
        await handler(conn)
    except Exception:
        logger.exception("connection handler failed for %s", conn.remote_addr)
    finally:
        # Every RawConnection closes its resources even when cancelled.
        await conn.aclose()


async def serve_listeners(
    listeners: Sequence[trio.abc.Listener[StreamT]],
    addrs: list[Multiaddr],
    on_accept: Callable[[StreamT], Awaitable[None]],
    task_status: trio.TaskStatus[list[Multiaddr]],
) -> None:
    """Accept on every listener, running ``on_accept(stream)`` per connection.

    Takes ownership of ``listeners``: they are closed when this returns,
    which only happens by cancellation or an unexpected accept error.
    """
    try:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept_loop, listener, on_accept, nursery)
            task_status.started(addrs)
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)


async def _accept_loop(
    listener: trio.abc.Listener[StreamT],
    on_accept: Callable[[StreamT], Awaitable[None]],
    nursery: trio.Nursery,
) -> None:
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                raise
            logger.error("accept failed (%s), retrying in %.1f s", exc, _ACCEPT_BACKOFF)
            await trio.sleep(_ACCEPT_BACKOFF)
            continue
        nursery.start_soon(on_accept, stream)


def ip_multiaddr(sockaddr: Any, suffix: tuple[Component, ...] = ()) -> Multiaddr:
    """``/ip4|ip6/<host>/tcp/<port>`` (plus ``suffix``) from a socket address.

    Any IPv6 zone (``fe80::1%eth0``) is dropped: ``/ip6zone`` is not dialable here.
    """
    host, port = sockaddr[0], sockaddr[1]
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    family = "ip4" if ip.version == 4 else "ip6"
    return Multiaddr(((family, str(ip)), ("tcp", str(port)), *suffix))
