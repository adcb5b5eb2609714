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

Connecting and accepting use trio's sockets; once connected, a
:class:`TcpConnection` takes the socket over and does its own system
calls (see the class for why).

Socket buffer sizes are left to the kernel: on Linux, setting
``SO_RCVBUF``/``SO_SNDBUF`` turns off autotuning and measured slower on
loopback (see ``bench/ws_throughput.py --tcp``).
"""

from __future__ import annotations

import errno
import operator
import os
import socket
from collections.abc import Sequence
from typing import Any

import trio
from trio.lowlevel import wait_readable, wait_writable

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
    """A TCP connection, read and written on its socket directly.

    Built from a connected ``trio.SocketStream`` (whose socket options
    trio has set: ``TCP_NODELAY``, ``TCP_NOTSENT_LOWAT``), whose file
    descriptor it takes over. It then makes the system calls itself and
    waits with ``trio.lowlevel.wait_readable`` / ``wait_writable``: the
    stream, socket and helper layers of ``SocketStream`` cost more than the
    system calls on a small message, and every message of every connection
    crosses this class. The contract is ``trio.abc.HalfCloseableStream``'s,
    checkpoints and errors included: ``BrokenResourceError`` when the
    connection fails, ``ClosedResourceError`` after our own ``aclose`` (or
    writing after ``send_eof``), ``BusyResourceError`` for a second
    concurrent sender or receiver.

    Two extras for the Noise layer above: :meth:`try_send` writes what the
    kernel takes right now, without waiting and without a checkpoint, for
    a caller that must not be interrupted halfway through a message (see
    :meth:`guts.security.noise.NoiseStream.try_send_all`), and
    :meth:`receive_into` reads into the caller's buffer.

    Attributes:
        socket: the non-blocking ``socket.socket`` (for socket options).
    """

    __slots__ = (
        "socket", "local_addr", "remote_addr", "_closed", "_eof_sent", "_sending", "_receiving", "_drained"
    )

    def __init__(self, stream: trio.SocketStream, suffix: tuple[Component, ...] = ()) -> None:
        """Take over ``stream``'s socket (``stream`` is unusable afterwards).

        Raises:
            OSError: if the peer is already gone (``getpeername`` fails);
                the socket is closed then.
        """
        trio_sock = stream.socket
        family, kind, proto = trio_sock.family, trio_sock.type, trio_sock.proto
        fd = trio_sock.detach()
        try:
            # Family, type and protocol given: no system calls to find them.
            sock = socket.socket(family, kind, proto, fileno=fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            sock.setblocking(False)
            self.local_addr = ip_multiaddr(sock.getsockname(), suffix)
            self.remote_addr = ip_multiaddr(sock.getpeername(), suffix)
        except BaseException:
            sock.close()
            raise
        self.socket = sock
        self._closed = False
        self._eof_sent = False
        self._sending = False
        self._receiving = False
        #: The last read left the socket empty (it returned less than it
        #: could): the next one waits for data before it tries. After a read
        #: that filled its buffer, more is probably there: it tries first.
        self._drained = True

    def __repr__(self) -> str:
        return f"<TcpConnection {self.local_addr} -> {self.remote_addr}>"

    def _check_send(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this connection")
        if self._closed:
            raise trio.ClosedResourceError("the connection was closed")
        if self._eof_sent:
            raise trio.ClosedResourceError("can't send data after sending EOF")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_send()
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            sock = self.socket
            waited = False
            with memoryview(data) as view:
                total = len(view)
                sent = 0
                while sent < total:
                    try:
                        sent += sock.send(view[sent:] if sent else view)
                    except BlockingIOError:
                        waited = True
                        await wait_writable(sock)
                    except OSError as exc:
                        raise _stream_error(exc) from exc
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Write as much of ``data`` as the kernel takes now; return how much.

        Never waits and is not a checkpoint; 0 when the socket buffer is full.

        Raises:
            trio.BrokenResourceError: the connection failed.
            trio.ClosedResourceError: closed, or ``send_eof`` was called.
            trio.BusyResourceError: another task is in :meth:`send_all`.
        """
        self._check_send()
        try:
            return self.socket.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise _stream_error(exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        self._check_send()
        self._sending = True
        try:
            await wait_writable(self.socket)
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this connection")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            if self._closed:
                raise trio.ClosedResourceError("the connection was closed")
            if self._eof_sent:
                return
            self._eof_sent = True
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError as exc:
                raise _stream_error(exc) from exc
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = RECEIVE_SIZE if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        sock = self._start_receive()
        try:
            waited = self._drained
            if waited:
                await wait_readable(sock)
            else:
                await trio.lowlevel.checkpoint_if_cancelled()
            while True:
                try:
                    data = sock.recv(size)
                    break
                except BlockingIOError:
                    waited = True
                    await wait_readable(sock)
                except OSError as exc:
                    raise _stream_error(exc) from exc
            self._drained = len(data) < size
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    async def receive_into(self, buffer: bytearray | memoryview) -> int:
        """Wait for data and read it into ``buffer``; return how many bytes
        (0 at end of file). A checkpoint, like :meth:`receive_some`.

        For readers that reuse one buffer (the Noise layer): a fresh
        ``bytes`` object per read costs an allocation, and above glibc's
        mmap threshold the system calls and page faults of a new mapping.
        """
        size = len(buffer)
        if not size:
            raise ValueError("receive_into needs a non-empty buffer")
        sock = self._start_receive()
        try:
            waited = self._drained
            if waited:
                await wait_readable(sock)
            else:
                await trio.lowlevel.checkpoint_if_cancelled()
            while True:
                try:
                    count = sock.recv_into(buffer)
                    break
                except BlockingIOError:
                    waited = True
                    await wait_readable(sock)
                except OSError as exc:
                    raise _stream_error(exc) from exc
            self._drained = count < size
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return count
        finally:
            self._receiving = False

    def _start_receive(self) -> socket.socket:
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this connection")
        if self._closed:
            raise trio.ClosedResourceError("the connection was closed")
        self._receiving = True
        return self.socket

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.socket)  # wakes our waiters
            self.socket.close()
        await trio.lowlevel.checkpoint()


def _stream_error(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """The trio stream error for a failed socket call (as ``SocketStream`` maps them)."""
    if exc.errno in (errno.EBADF, errno.ENOTSOCK):
        return trio.ClosedResourceError("the connection was closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


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

