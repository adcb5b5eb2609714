"""TCP transport: ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>``.

An ``/ip4`` or ``/ip6`` address is dialled directly: one socket, one
``connect``, no name lookup and no happy-eyeballs race (there is only one
address to try; the race's nursery and cancel scopes cost more than the
rest of the connect on loopback). ``/dns`` names go through
``trio.open_tcp_stream`` (happy eyeballs across address families) except
for ``/dns4`` and ``/dns6``, which must only ever reach IPv4 or IPv6
respectively, so the name is resolved with a family filter and the
results are raced the same staggered way. trio sets
``TCP_NODELAY`` on every TCP ``SocketStream``; libp2p's small handshake
and multistream messages would otherwise sit behind Nagle's algorithm.

Socket buffer sizes are left to the kernel: on Linux, setting
``SO_RCVBUF``/``SO_SNDBUF`` turns off autotuning and measured slower on
loopback (see ``bench/ws_throughput.py --tcp``).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import trio

from guts.errors import DialError
from guts.multiaddr import Component, Multiaddr
from guts.transport._base import ConnectionHandler, RawConnection, ip_multiaddr, run_handler, serve_listeners

__all__ = ["TcpConnection", "TcpTransport"]

#: ``receive_some()`` without ``max_bytes`` asks the kernel for this much
#: (trio's default is 64 KiB; a larger read halves the syscalls on bulk
#: transfers).
RECEIVE_SIZE = 256 * 1024
#: Delay before racing the next resolved address (RFC 8305 suggests 250 ms).
HAPPY_EYEBALLS_DELAY = 0.25

_HOST_PROTOCOLS = frozenset({"ip4", "ip6", "dns", "dns4", "dns6"})
_IP_PROTOCOLS = frozenset({"ip4", "ip6"})


class TcpConnection(RawConnection, trio.abc.HalfCloseableStream):
    """A TCP connection: a thin wrapper adding multiaddrs to a ``trio.SocketStream``.

    Attributes:
        transport_stream: the wrapped ``trio.SocketStream`` (for socket options).
    """

    __slots__ = ("transport_stream", "local_addr", "remote_addr")

    def __init__(self, stream: trio.SocketStream, suffix: tuple[Component, ...] = ()) -> None:
        """Wrap ``stream``.

        Raises:
            OSError: if the peer is already gone (``getpeername`` fails).
        """
        self.transport_stream = stream
        self.local_addr = ip_multiaddr(stream.socket.getsockname(), suffix)
        self.remote_addr = ip_multiaddr(stream.socket.getpeername(), suffix)

    def __repr__(self) -> str:
        return f"<TcpConnection {self.local_addr} -> {self.remote_addr}>"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.transport_stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.transport_stream.receive_some(RECEIVE_SIZE if max_bytes is None else max_bytes)

    async def aclose(self) -> None:
        await self.transport_stream.aclose()


def tcp_target(addr: Multiaddr, suffix: tuple[str, ...] = ()) -> tuple[str, str, int] | None:
    """``(host protocol, host, port)`` if ``addr`` is ``/<host>/<h>/tcp/<p>`` + ``suffix``.

    A trailing ``/p2p/<id>`` is ignored. Shared with the WebSocket transport.
    """
    components = addr.without_p2p().components
    if len(components) != 2 + len(suffix):
        return None
    (kind, host), (tcp, port) = components[0], components[1]
    if kind not in _HOST_PROTOCOLS or tcp != "tcp" or host is None or port is None:
        return None
    if tuple(c.protocol for c in components[2:]) != suffix:
        return None
    return kind, host, int(port)


async def connect_tcp(addr: Multiaddr, kind: str, host: str, port: int) -> trio.SocketStream:
    """Open a TCP stream to a target from :func:`tcp_target`.

    Raises:
        DialError: naming ``addr``, with the cause chained (an ``OSError``,
            or a ``UnicodeError`` for a name that is not a valid hostname).
    """
    try:
        if kind == "ip4" or kind == "ip6":
            return await _connect_ip(socket.AF_INET if kind == "ip4" else socket.AF_INET6, host, port)
        if kind == "dns4" or kind == "dns6":
            family = socket.AF_INET if kind == "dns4" else socket.AF_INET6
            targets = await trio.socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
            return await _connect_staggered(targets)
        return await trio.open_tcp_stream(host, port, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY)
    except (OSError, ValueError) as exc:  # ValueError: a name IDNA cannot encode
        raise DialError(f"cannot dial {addr}: {exc}") from exc


async def _connect_ip(family: int, host: str, port: int) -> trio.SocketStream:
    """Connect to an IP literal (what ``open_tcp_stream`` does for one target)."""
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect((host, port))
        return trio.SocketStream(sock)  # which sets TCP_NODELAY
    except BaseException:
        sock.close()
        raise


async def _connect_staggered(targets: Sequence[tuple[int, int, int, str, Any]]) -> trio.SocketStream:
    """Connect to the first target that answers, starting one every 250 ms (RFC 8305)."""
    if not targets:
        raise OSError("name resolved to no address of the requested family")
    winner: list[trio.SocketStream] = []
    errors: list[OSError] = []

    async def attempt(target: tuple[int, int, int, str, Any], failed: trio.Event) -> None:
        family, type_, proto, _, sockaddr = target
        sock = None
        try:
            sock = trio.socket.socket(family, type_, proto)
            await sock.connect(sockaddr)
        except OSError as exc:
            if sock is not None:
                sock.close()
            errors.append(exc)
            failed.set()
            return
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        if winner:
            sock.close()
            return
        winner.append(trio.SocketStream(sock))
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for target in targets:
            failed = trio.Event()
            nursery.start_soon(attempt, target, failed)
            with trio.move_on_after(HAPPY_EYEBALLS_DELAY):
                await failed.wait()
    if winner:
        return winner[0]
    raise OSError(f"all {len(targets)} connection attempts failed: {errors[-1]}") from ExceptionGroup(
        "connection attempts", errors
    )


async def open_listeners(addr: Multiaddr, suffix: tuple[Component, ...] = ()) -> tuple[list[trio.SocketListener], list[Multiaddr]]:
    """Bind TCP listeners for ``/ip4|ip6/<ip>/tcp/<port>``; return them with their real addresses."""
    target = tcp_target(addr, tuple(c.protocol for c in suffix))
    if target is None or target[0] not in _IP_PROTOCOLS or addr.peer_id is not None:
        raise ValueError(f"cannot listen on {addr}")
    _, host, port = target
    listeners = await trio.open_tcp_listeners(port, host=host)
    return listeners, [ip_multiaddr(listener.socket.getsockname(), suffix) for listener in listeners]


class TcpTransport:
    """The :class:`~guts.transport.Transport` for plain TCP."""

    def can_dial(self, addr: Multiaddr) -> bool:
        return tcp_target(addr) is not None

    def can_listen(self, addr: Multiaddr) -> bool:
        target = tcp_target(addr)
        return target is not None and target[0] in _IP_PROTOCOLS and addr.peer_id is None

    async def dial(self, addr: Multiaddr) -> TcpConnection:
        target = tcp_target(addr)
        if target is None:
            raise DialError(f"cannot dial {addr}: not a TCP address")
        stream = await connect_tcp(addr, *target)
        try:
            return TcpConnection(stream)
        except OSError as exc:
            await trio.aclose_forcefully(stream)
            raise DialError(f"cannot dial {addr}: {exc}") from exc

    async def serve(
        self,
        addr: Multiaddr,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners, addrs = await open_listeners(addr)

        async def on_accept(stream: trio.SocketStream) -> None:
            try:
                conn = TcpConnection(stream)
            except OSError:  # reset before we looked at it
                await trio.aclose_forcefully(stream)
                return
            await run_handler(handler, conn)

        await serve_listeners(listeners, addrs, on_accept, task_status)

